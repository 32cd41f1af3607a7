"""The multi-scale deformable attention module (Deformable DETR, eq. 3 and sec. 4.1)."""
import math

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule, constant_init, xavier_init
from torch import nn

from mmdeform.ops import flat_pixel_coords, ms_deform_attn
from mmdeform.registry import MODELS


@MODELS.register_module()
class BatchFirstMSDeformAttn(BaseModule):
    """Each of M heads attends to K sampled points on each of L levels around a reference.

    Batch-first: ``query`` is (N, Lq, C) and ``value`` (N, S, C), S = sum of H_l * W_l.
    Returns ``identity + dropout(output_proj(attention))``.

    mmcv's ``MultiScaleDeformableAttention`` (which ``type='MultiScaleDeformableAttention'``
    builds) computes the same with the same parameters, but is sequence-first by default and
    takes ``forward``'s arguments in another order; hence this module's own name.

    Args:
        embed_dims (int): C. Default 256.
        num_heads (int): M. Default 8.
        num_levels (int): L. Default 4.
        num_points (int): K, points per head and level. Default 4.
        dropout (float): dropout on the output before the residual. Default 0.1.
        own_level_only (bool): each query attends only to the level it lies on (the weights of
            the other levels are zero). For self-attention over the flattened maps, i.e. the
            encoder: the paper's "w/o multi-scale attention" ablation (Table 2). Default False.
    """

    def __init__(self, embed_dims=256, num_heads=8, num_levels=4, num_points=4, dropout=0.1,
                 own_level_only=False, init_cfg=None):
        super().__init__(init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.own_level_only = own_level_only
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.init_weights()

    def init_weights(self):
        """Offsets start on a grid: head m looks along angle 2*pi*m/M, point k at distance
        k+1 (in pixels of each level); attention starts uniform."""
        constant_init(self.sampling_offsets, 0.)
        angles = torch.arange(self.num_heads, dtype=torch.float64) * (2 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float64).view(1, 1, -1, 1)
        grid = directions.view(self.num_heads, 1, 1, 2) * steps  # (M, 1, K, 2)
        grid = grid.expand(-1, self.num_levels, -1, -1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        constant_init(self.attention_weights, val=0., bias=0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)
        self._is_init = True

    def forward(self, query, reference_points, spatial_shapes, level_start_index, value=None,
                query_pos=None, key_padding_mask=None, identity=None):
        """
        Args:
            query (Tensor): (N, Lq, C).
            reference_points (Tensor): (N, Lq, L, 2) normalized points (x, y), or
                (N, Lq, L, 4) normalized boxes (cx, cy, w, h).
            spatial_shapes (Tensor): (L, 2) int64, each level's (H, W).
            level_start_index (Tensor): (L,) int64.
            value (Tensor, optional): (N, S, C). Defaults to ``query`` (self-attention).
            query_pos (Tensor, optional): (N, Lq, C), added to the query.
            key_padding_mask (Tensor, optional): (N, S) bool, True at padding.
            identity (Tensor, optional): the residual. Defaults to ``query``.
        """
        identity = query if identity is None else identity
        value = query if value is None else value
        if query_pos is not None:
            query = query + query_pos
        N, Lq, _ = query.shape
        M, L, K = self.num_heads, self.num_levels, self.num_points
        if spatial_shapes.shape[0] != L:
            raise ValueError(f'spatial_shapes has {spatial_shapes.shape[0]} levels but the '
                             f'attention was built with num_levels={L}')

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.)
        value = value.view(N, value.shape[1], M, -1)
        offsets = self.sampling_offsets(query).view(N, Lq, M, L, K, 2)
        weights = self.attention_weights(query).view(N, Lq, M, L, K)
        if self.own_level_only:
            own_level = self.own_level_mask(spatial_shapes, Lq, value.shape[1])
            weights = weights.masked_fill(~own_level, float('-inf'))
        weights = weights.view(N, Lq, M, L * K).softmax(-1).view(N, Lq, M, L, K)
        locations = self.sampling_locations(reference_points, offsets, spatial_shapes)

        # Mixed precision: run the op in the widest dtype so locations keep their precision.
        dtype = torch.promote_types(value.dtype, locations.dtype)
        output = ms_deform_attn(value.to(dtype), spatial_shapes, level_start_index,
                                locations.to(dtype), weights.to(dtype))
        return identity + self.dropout(self.output_proj(output.to(query.dtype)))

    def own_level_mask(self, spatial_shapes, num_queries, num_values):
        """(1, Lq, 1, L, 1) bool, True at the level each query lies on; the queries must be
        the positions of the flattened maps, as in the encoder."""
        if num_queries != num_values:
            raise ValueError('own_level_only needs one query per position of the flattened maps '
                             f'(encoder self-attention): got {num_queries} queries for '
                             f'{num_values} values')
        level = flat_pixel_coords(spatial_shapes, num_queries)[0]
        return F.one_hot(level, self.num_levels).bool().view(1, num_queries, 1, -1, 1)

    def sampling_locations(self, reference_points, offsets, spatial_shapes):
        """(N, Lq, M, L, K, 2) normalized locations from references and pixel offsets."""
        reference = reference_points[:, :, None, :, None, :]  # (N, Lq, 1, L, 1, 2 or 4)
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level: normalize by (W, H), in that order.
            normalizer = spatial_shapes.flip(-1).to(offsets.dtype)  # (L, 2) as (W, H)
            return reference + offsets / normalizer[None, None, None, :, None, :]
        if reference_points.shape[-1] == 4:
            # Offsets scale with the box: K points span half its size.
            return (reference[..., :2]
                    + offsets / self.num_points * reference[..., 2:] * 0.5)
        raise ValueError('reference_points must end with 2 (x, y) or 4 (cx, cy, w, h) '
                         f'coordinates, got shape {tuple(reference_points.shape)}')
