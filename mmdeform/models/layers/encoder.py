"""The deformable transformer encoder (Deformable DETR sec. 4.1): every pixel of every level is
a query that attends, with MSDeformAttn, around its own position on all levels.

Config keys and parameter names are mmdet 3.3's ``DeformableDetrTransformerEncoder``'s, so its
configs build this encoder and its checkpoints load into it.
"""
import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, ModuleList

from mmdeform.ops import flat_pixel_coords
from mmdeform.registry import MODELS

from .msdeform_attn import BatchFirstMSDeformAttn


def without_batch_first(attn_cfg):
    """A copy of an attention config minus its ``batch_first`` flag, which mmdet's configs carry.

    All our layers take (N, length, C) tensors, so the flag may only be True.
    """
    attn_cfg = dict(attn_cfg)
    if attn_cfg.pop('batch_first', True) is not True:
        raise ValueError('mmdeform transformer layers are batch-first only: inputs are '
                         '(batch, length, channels); remove batch_first or set it to True')
    return attn_cfg


def normalized_pixel_centres(spatial_shapes, valid_sizes, num_pixels):
    """Every pixel's centre over its level's valid (unpadded) size.

    Args:
        spatial_shapes (Tensor): (L, 2), each level's (H, W).
        valid_sizes (Tensor): (N, L, 2), each image's valid (W, H) on each level, in pixels.
        num_pixels (int): S = sum of H * W (static; see :func:`flat_pixel_coords`).

    Returns:
        Tensor: (N, S, 2) as (x, y), levels flattened as the features are; inside the image
        ((i + 0.5) / valid size) lies in (0, 1), on padding it exceeds 1.
    """
    level, x, y = flat_pixel_coords(spatial_shapes, num_pixels)
    xy = torch.stack([x, y], -1).to(valid_sizes.dtype) + 0.5  # (S, 2)
    return xy / valid_sizes[:, level]


@MODELS.register_module()
class DeformableDetrEncoderLayer(BaseModule):
    """Post-norm: x = LN(x + MSDeformAttn(x + pos, p, x)); x = LN(x + FFN(x)).

    Args:
        self_attn_cfg (dict): :class:`BatchFirstMSDeformAttn` arguments.
        ffn_cfg (dict): mmcv ``FFN`` arguments.
        norm_cfg (dict): the normalization after each sub-layer. Default LayerNorm.
    """

    def __init__(self, self_attn_cfg, ffn_cfg, norm_cfg=dict(type='LN'), init_cfg=None):
        super().__init__(init_cfg)
        self.self_attn = BatchFirstMSDeformAttn(**without_batch_first(self_attn_cfg))
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**ffn_cfg)
        self.norms = ModuleList(build_norm_layer(norm_cfg, self.embed_dims)[1] for _ in range(2))

    def forward(self, query, query_pos, key_padding_mask, reference_points, spatial_shapes,
                level_start_index):
        """query, query_pos (N, S, C); key_padding_mask (N, S); reference_points (N, S, L, 2)."""
        query = self.norms[0](self.self_attn(
            query, reference_points, spatial_shapes, level_start_index, query_pos=query_pos,
            key_padding_mask=key_padding_mask))
        return self.norms[1](self.ffn(query))


@MODELS.register_module()
class DeformableDetrEncoder(BaseModule):
    """A stack of :class:`DeformableDetrEncoderLayer` built from one ``layer_cfg``."""

    def __init__(self, num_layers, layer_cfg, init_cfg=None):
        super().__init__(init_cfg)
        self.num_layers = num_layers
        self.layers = ModuleList(DeformableDetrEncoderLayer(**layer_cfg) for _ in range(num_layers))
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query, query_pos, key_padding_mask, spatial_shapes, level_start_index,
                valid_ratios):
        """
        Args:
            query (Tensor): (N, S, C), the flattened multi-scale features.
            query_pos (Tensor): (N, S, C), positional plus level embedding.
            key_padding_mask (Tensor): (N, S) bool, True at padding.
            spatial_shapes (Tensor): (L, 2) int64, each level's (H, W).
            level_start_index (Tensor): (L,) int64.
            valid_ratios (Tensor): (N, L, 2), each level's valid (W, H) over its (W, H).

        Returns:
            Tensor: (N, S, C), the memory.
        """
        reference_points = self.reference_points(spatial_shapes, valid_ratios, query.shape[1])
        for layer in self.layers:
            query = layer(query, query_pos, key_padding_mask, reference_points, spatial_shapes,
                          level_start_index)
        return query

    @staticmethod
    def reference_points(spatial_shapes, valid_ratios, num_pixels):
        """p_q of each of the S = ``num_pixels`` pixels on each level: (N, S, L, 2) normalized
        (x, y).

        A pixel's centre, normalized by its own level's valid size, is its position relative to
        the image; times each level's valid ratio, that same position in the level's padded map.
        """
        valid_sizes = valid_ratios * spatial_shapes.flip(-1)  # (N, L, 2) as (W, H)
        centres = normalized_pixel_centres(spatial_shapes, valid_sizes, num_pixels)
        return centres[:, :, None] * valid_ratios[:, None]
