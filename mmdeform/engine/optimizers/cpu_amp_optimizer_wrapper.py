from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from mmdeform.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CpuAmpOptimWrapper(OptimWrapper):
    """Automatic mixed precision training on CPU: bfloat16 autocast, no loss scaling.

    mmengine's ``AmpOptimWrapper`` refuses to run without a GPU (its loss scaler is CUDA's), and
    CPU autocast supports bfloat16 only. bfloat16 has the exponent range of float32, so small
    gradients do not underflow and need no loss scaler; the parameters, their gradients and the
    optimizer state stay float32. ``tools/train.py --amp`` picks this wrapper when CUDA is not
    available.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield
