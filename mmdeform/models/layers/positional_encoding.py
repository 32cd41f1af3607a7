"""Sine positional encodings (DETR sec. 3.2; Deformable DETR sec. 4.1 and appendix A.4).

One formula serves both pixels and boxes: a coordinate c in [0, scale] becomes
    PE(c, 2i) = sin(c / T^(2i/d)),    PE(c, 2i+1) = cos(c / T^(2i/d)),    i = 0 .. d/2 - 1.
"""
import math

import torch
from mmdet.models.layers import SinePositionalEncoding as MMDetSinePositionalEncoding

from mmdeform.registry import MODELS


def sine_embedding(coords, num_feats=128, temperature=10000):
    """(...,) coordinates -> (..., num_feats): sin and cos interleaved, one frequency per pair."""
    exponents = torch.arange(0, num_feats, 2, device=coords.device) / num_feats  # 2i / d
    angles = coords[..., None] / temperature**exponents  # (..., d/2)
    return torch.stack((angles.sin(), angles.cos()), -1).flatten(-2)


def box_sine_embedding(boxes, num_feats=128, temperature=10000, scale=2 * math.pi):
    """The two-stage query embedding: (N, Q, 4) normalized (cx, cy, w, h) -> (N, Q, 4 * num_feats),
    each coordinate's ``num_feats`` in turn."""
    return sine_embedding(boxes * scale, num_feats, temperature).flatten(-2)


@MODELS.register_module()
class SinePositionalEncoding(MMDetSinePositionalEncoding):
    """The pixel encoding: each axis' position, counted over valid pixels only, through
    :func:`sine_embedding`.

    mmdet's module of the same name, with its arguments, defaults and checks. Deformable DETR sets
    ``normalize=True, offset=-0.5`` (our configs do).

    Args:
        num_feats (int): d, features per axis; the output has 2 * d channels, y's then x's.
        temperature (float): T. Default 10000.
        normalize (bool): map positions to (0, scale] over each image's valid extent.
            Default False.
        scale (float): Default 2 * pi; with ``normalize``, one that is not a number is an
            ``AssertionError``.
        eps (float): keeps the normalization finite on an all-padding row. Default 1e-6.
        offset (float): added to the 1-based position before normalizing, -0.5 puts the value
            at the pixel centre. Default 0.
    """

    def forward(self, mask=None, input=None):
        """(N, H, W) mask, True (non-zero) at padding, or without one an (N, C, H, W) ``input``
        with no padding -> (N, 2 * num_feats, H, W)."""
        if mask is None:
            if input is None:
                raise AssertionError('SinePositionalEncoding needs a mask or an input')
            mask = input.new_zeros((input.shape[0], *input.shape[2:]), dtype=torch.bool)
        valid = mask.logical_not()
        y = valid.cumsum(1, dtype=torch.float32)  # 1-based row among valid pixels
        x = valid.cumsum(2, dtype=torch.float32)
        if self.normalize:
            # Divide by the last row / column: the valid height / width of each image.
            y = (y + self.offset) / (y[:, -1:, :] + self.eps) * self.scale
            x = (x + self.offset) / (x[:, :, -1:] + self.eps) * self.scale
        pos = torch.cat([sine_embedding(y, self.num_feats, self.temperature),
                         sine_embedding(x, self.num_feats, self.temperature)], -1)
        return pos.permute(0, 3, 1, 2)
