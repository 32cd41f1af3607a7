"""BiFPN (Tan et al., EfficientDet, CVPR 2020), a neck of the paper's Table 2 ablation: a
top-down then a bottom-up pass over the levels, each node a fast normalized weighted fusion of
its inputs followed by a depthwise separable 3x3 conv."""
import torch
import torch.nn.functional as F
from mmcv.cnn import DepthwiseSeparableConvModule
from mmdet.models.necks import ChannelMapper
from mmengine.model import BaseModule, ModuleList
from torch import nn

from mmdeform.registry import MODELS


class WeightedFusion(BaseModule):
    """One BiFPN node: conv(swish(sum_i w_i x_i / (sum_i w_i + eps))), w = relu(learned)."""

    def __init__(self, num_inputs, channels, norm_cfg, eps):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_inputs))
        self.eps = eps
        # EfficientDet: depthwise conv, pointwise conv, then the norm; no activation after.
        self.conv = DepthwiseSeparableConvModule(channels, channels, 3, padding=1,
                                                 norm_cfg=norm_cfg, act_cfg=None,
                                                 dw_norm_cfg=None)

    def forward(self, inputs):
        weights = F.relu(self.weights)
        weights = weights / (weights.sum() + self.eps)
        return self.conv(F.silu(sum(w * x for w, x in zip(weights, inputs))))


class BiFPNLayer(BaseModule):
    """One top-down and one bottom-up pass over L maps of the same channels, finest first.

    Top-down, level l fuses its input with the (upsampled) top-down map of level l+1; bottom-up,
    it fuses its input, its top-down map and the (max-pooled) output of level l-1. The coarsest
    level has no top-down node, so its bottom-up node fuses two maps.
    """

    def __init__(self, num_levels, channels, norm_cfg, eps):
        super().__init__()
        self.top_down = ModuleList(
            WeightedFusion(2, channels, norm_cfg, eps) for _ in range(num_levels - 1))
        self.bottom_up = ModuleList(
            WeightedFusion(2 if level == num_levels - 1 else 3, channels, norm_cfg, eps)
            for level in range(1, num_levels))

    def forward(self, feats):
        top_down = [feats[-1]]
        for level in range(len(feats) - 2, -1, -1):
            coarser = F.interpolate(top_down[0], size=feats[level].shape[-2:], mode='nearest')
            top_down.insert(0, self.top_down[level]([feats[level], coarser]))
        outs = [top_down[0]]
        for level in range(1, len(feats)):
            # Adaptive pooling lands on the level's exact size, odd sizes included.
            finer = F.adaptive_max_pool2d(outs[-1], feats[level].shape[-2:])
            inputs = [feats[level], finer] if level == len(feats) - 1 \
                else [feats[level], top_down[level], finer]
            outs.append(self.bottom_up[level - 1](inputs))
        return outs


@MODELS.register_module()
class BiFPN(BaseModule):
    """Input projections as our ChannelMapper neck (1x1 conv + norm per input, extra levels from
    3x3 stride-2 convs on the last input), then ``num_layers`` BiFPN layers.

    Args:
        in_channels (list[int]): channels of the backbone's maps, finest first.
        out_channels (int): channels of every output map.
        num_outs (int): output levels, at least 2 (``len(in_channels)`` plus extra levels).
        num_layers (int): stacked BiFPN layers. Default 3 (EfficientDet-D0's depth).
        norm_cfg (dict): the norm after every conv. Default GroupNorm with 32 groups.
        eps (float): keeps the fusion weights' normalizer positive. Default 1e-4.
    """

    def __init__(self, in_channels, out_channels, num_outs, num_layers=3,
                 norm_cfg=dict(type='GN', num_groups=32), eps=1e-4, init_cfg=None):
        super().__init__(init_cfg)
        if num_outs < max(2, len(in_channels)):
            raise ValueError(f'BiFPN needs num_outs >= 2 and >= len(in_channels) '
                             f'({len(in_channels)}), got {num_outs}')
        self.input_proj = ChannelMapper(in_channels, out_channels, kernel_size=1,
                                        norm_cfg=norm_cfg, act_cfg=None, num_outs=num_outs)
        self.layers = ModuleList(
            BiFPNLayer(num_outs, out_channels, norm_cfg, eps) for _ in range(num_layers))

    def forward(self, inputs):
        feats = list(self.input_proj(inputs))
        for layer in self.layers:
            feats = layer(feats)
        return tuple(feats)
