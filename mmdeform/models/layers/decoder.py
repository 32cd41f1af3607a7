"""The deformable transformer decoder (Deformable DETR sec. 4.1) with iterative bounding box
refinement (sec. 4.2 and appendix A.4).

Config keys and parameter names are mmdet 3.3's ``DeformableDetrTransformerDecoder``'s, so its
configs build this decoder and its checkpoints load into it.
"""
import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN, MultiheadAttention
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmengine.model import BaseModule, ModuleList

from mmdeform.registry import MODELS

from .encoder import without_batch_first
from .msdeform_attn import BatchFirstMSDeformAttn


def multihead_attention_cfg(attn_cfg):
    """mmcv ``MultiheadAttention`` arguments from an mmdet config: batch-first, and mmcv's
    deprecated ``dropout`` (which mmdet's configs use) spelled out as the two dropouts it sets,
    which spares mmcv's warning and its edit of its own shared default argument."""
    attn_cfg = dict(without_batch_first(attn_cfg), batch_first=True)
    if 'dropout' in attn_cfg:
        if 'attn_drop' in attn_cfg or 'dropout_layer' in attn_cfg:
            raise ValueError('give either dropout or attn_drop / dropout_layer, not both')
        p = attn_cfg.pop('dropout')
        attn_cfg.update(attn_drop=p, dropout_layer=dict(type='Dropout', drop_prob=p))
    return attn_cfg


@MODELS.register_module()
class DeformableDetrDecoderLayer(BaseModule):
    """Post-norm: self-attention among the queries (q = k = tgt + pos, v = tgt) -> LN ->
    MSDeformAttn on the memory around the reference -> LN -> FFN -> LN.

    Args:
        self_attn_cfg (dict): mmcv ``MultiheadAttention`` arguments.
        cross_attn_cfg (dict): :class:`BatchFirstMSDeformAttn` arguments.
        ffn_cfg (dict): mmcv ``FFN`` arguments.
        norm_cfg (dict): the normalization after each sub-layer. Default LayerNorm.
    """

    def __init__(self, self_attn_cfg, cross_attn_cfg, ffn_cfg, norm_cfg=dict(type='LN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.self_attn = MultiheadAttention(**multihead_attention_cfg(self_attn_cfg))
        self.cross_attn = BatchFirstMSDeformAttn(**without_batch_first(cross_attn_cfg))
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**ffn_cfg)
        self.norms = ModuleList(build_norm_layer(norm_cfg, self.embed_dims)[1] for _ in range(3))

    def forward(self, query, query_pos, value, key_padding_mask, reference_points,
                spatial_shapes, level_start_index):
        """query, query_pos (N, Q, C); value (N, S, C); key_padding_mask (N, S);
        reference_points (N, Q, L, 2 or 4), already in each level's padded frame."""
        query = self.norms[0](self.self_attn(
            query, key=query, value=query, query_pos=query_pos, key_pos=query_pos))
        query = self.norms[1](self.cross_attn(
            query, reference_points, spatial_shapes, level_start_index, value=value,
            query_pos=query_pos, key_padding_mask=key_padding_mask))
        return self.norms[2](self.ffn(query))


@MODELS.register_module()
class DeformableDetrDecoder(BaseModule):
    """A stack of :class:`DeformableDetrDecoderLayer` built from one ``layer_cfg``; it returns
    every layer's output and reference.

    Args:
        num_layers (int): the number of layers.
        layer_cfg (dict): :class:`DeformableDetrDecoderLayer` arguments.
        return_intermediate (bool): accepted for mmdet's configs; only True, which is what this
            decoder does.
        post_norm_cfg (None): accepted for mmdet's configs; only None: the layers are post-norm
            already.
    """

    def __init__(self, num_layers, layer_cfg, return_intermediate=True, post_norm_cfg=None,
                 init_cfg=None):
        super().__init__(init_cfg)
        if return_intermediate is not True:
            raise ValueError('DeformableDetrDecoder always returns every layer\'s output '
                             '(the auxiliary losses need them): return_intermediate must be '
                             'True')
        if post_norm_cfg is not None:
            raise ValueError('DeformableDetrDecoder has no final norm (its layers end with '
                             'one): post_norm_cfg must be None')
        self.num_layers = num_layers
        self.layers = ModuleList(DeformableDetrDecoderLayer(**layer_cfg) for _ in range(num_layers))
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query, query_pos, value, key_padding_mask, reference_points,
                spatial_shapes, level_start_index, valid_ratios, reg_branches=None):
        """
        Args:
            query (Tensor): (N, Q, C), tgt.
            query_pos (Tensor): (N, Q, C).
            value (Tensor): (N, S, C), the encoder memory.
            key_padding_mask (Tensor): (N, S) bool, True at padding.
            reference_points (Tensor): (N, Q, 2) normalized (x, y), or (N, Q, 4) normalized
                (cx, cy, w, h) (two-stage), relative to the valid image.
            spatial_shapes (Tensor): (L, 2) int64, each level's (H, W).
            level_start_index (Tensor): (L,) int64.
            valid_ratios (Tensor): (N, L, 2), each level's valid (W, H) over its (W, H).
            reg_branches (Sequence[nn.Module], optional): one box head per layer, each giving
                (N, Q, 4) deltas; with them every layer refines the reference it passes on.

        Returns:
            tuple[Tensor, Tensor]: every layer's output, (num_layers, N, Q, C), and the
            reference it passes on, (num_layers, N, Q, 2 or 4): its refined box with
            ``reg_branches`` (4-d from the first layer on), else the input reference.
        """
        if reference_points.shape[-1] not in (2, 4):
            raise ValueError('reference_points must end with 2 (x, y) or 4 (cx, cy, w, h) '
                             f'coordinates, got shape {tuple(reference_points.shape)}')
        outputs, references = [], []
        for i, layer in enumerate(self.layers):
            # Image-relative reference -> each level's padded frame: (x, y[, w, h]) * ratios.
            ratios = valid_ratios.repeat(1, 1, reference_points.shape[-1] // 2)
            query = layer(query, query_pos, value, key_padding_mask,
                          reference_points[:, :, None] * ratios[:, None], spatial_shapes,
                          level_start_index)
            if reg_branches is not None:
                # detached: no gradient flows along the chain of references
                reference_points = refine_boxes(reference_points, reg_branches[i](query)).detach()
            outputs.append(query)
            references.append(reference_points)
        return torch.stack(outputs), torch.stack(references)


def refine_boxes(reference, delta):
    """Iterative box refinement: b_d = sigmoid(delta_d + sigmoid^-1(b_{d-1})). A 2-d reference
    (x, y) only offsets delta's centre."""
    prior = inverse_sigmoid(reference)
    prior = F.pad(prior, (0, delta.shape[-1] - prior.shape[-1]))
    return (delta + prior).sigmoid()
