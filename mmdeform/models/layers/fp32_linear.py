"""A Linear layer whose output keeps fp32 precision under autocast."""
import torch
from torch import nn


class Fp32Linear(nn.Linear):
    """``nn.Linear`` that computes in fp32 under autocast (its input upcast), and exactly as
    ``nn.Linear`` otherwise; same parameters, same state dict.

    For the layers that compute box coordinates (docs/deployment.md): box deltas and reference
    points are logits, and bf16 keeps 8 bits of them. A logit near 3 then moves in steps of
    1/64, which after the sigmoid is up to 2-3 px of a 1333 px image.
    """

    def forward(self, x):
        device_type = x.device.type  # 'meta', for one, has no autocast
        if not (torch.amp.is_autocast_available(device_type)
                and torch.is_autocast_enabled(device_type)):
            return super().forward(x)
        with torch.autocast(device_type, enabled=False):
            return super().forward(x.float())
