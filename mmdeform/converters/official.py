"""The authors' checkpoint layout (their deformable_detr.py, deformable_transformer.py and a
torchvision ResNet as ``backbone.0.body``) <-> ours, both ways.

Their input projections ``input_proj.{l}`` are our neck's ``convs.{l}`` for the levels taken from
backbone stages (1x1 convs) and ``extra_convs.{l - n}`` for the extra stride-64 level (a 3x3 conv
on C5). Class rows are left as they are: see :mod:`.coco_classes`.
"""
import re

import torch

from .key_renames import rename_keys, reversed_pairs

# (ours, theirs) key prefixes; the input projections come from input_projection_pairs.
OFFICIAL_PAIRS = [
    ('backbone.', 'backbone.0.body.'),
    ('level_embed', 'transformer.level_embed'),
    ('reference_points_fc.', 'transformer.reference_points.'),
    ('memory_trans_fc.', 'transformer.enc_output.'),
    ('memory_trans_norm.', 'transformer.enc_output_norm.'),
    ('pos_trans_fc.', 'transformer.pos_trans.'),
    ('pos_trans_norm.', 'transformer.pos_trans_norm.'),
    ('encoder.layers.{n}.self_attn.', 'transformer.encoder.layers.{n}.self_attn.'),
    ('encoder.layers.{n}.norms.0.', 'transformer.encoder.layers.{n}.norm1.'),
    ('encoder.layers.{n}.norms.1.', 'transformer.encoder.layers.{n}.norm2.'),
    ('encoder.layers.{n}.ffn.layers.0.0.', 'transformer.encoder.layers.{n}.linear1.'),
    ('encoder.layers.{n}.ffn.layers.1.', 'transformer.encoder.layers.{n}.linear2.'),
    # Their decoder self-attention is torch's MultiheadAttention, as ours (inside mmcv's wrapper).
    ('decoder.layers.{n}.self_attn.attn.', 'transformer.decoder.layers.{n}.self_attn.'),
    ('decoder.layers.{n}.cross_attn.', 'transformer.decoder.layers.{n}.cross_attn.'),
    # Their decoder layer: self-attention -> norm2, cross-attention -> norm1, FFN -> norm3.
    ('decoder.layers.{n}.norms.0.', 'transformer.decoder.layers.{n}.norm2.'),
    ('decoder.layers.{n}.norms.1.', 'transformer.decoder.layers.{n}.norm1.'),
    ('decoder.layers.{n}.norms.2.', 'transformer.decoder.layers.{n}.norm3.'),
    ('decoder.layers.{n}.ffn.layers.0.0.', 'transformer.decoder.layers.{n}.linear1.'),
    ('decoder.layers.{n}.ffn.layers.1.', 'transformer.decoder.layers.{n}.linear2.'),
    ('query_embedding.', 'query_embed.'),
    ('bbox_head.cls_branches.{n}.', 'class_embed.{n}.'),
    # Their box MLP's three Linear layers sit at 0, 2, 4 of our Sequential (ReLUs between).
    ('bbox_head.reg_branches.{n}.0.', 'bbox_embed.{n}.layers.0.'),
    ('bbox_head.reg_branches.{n}.2.', 'bbox_embed.{n}.layers.1.'),
    ('bbox_head.reg_branches.{n}.4.', 'bbox_embed.{n}.layers.2.'),
]
# With refinement their decoder holds aliases of the heads: the same tensors as at the top.
DECODER_HEAD_ALIASES = re.compile(r'^transformer\.decoder\.(class_embed|bbox_embed)\.')
LAYOUT = "the authors' checkpoint"


def input_projection_pairs(num_backbone_levels, num_levels):
    """(ours, theirs) prefixes of the input projections (conv, then GroupNorm) of each level."""
    pairs = []
    for level in range(num_levels):
        ours = (f'neck.convs.{level}' if level < num_backbone_levels
                else f'neck.extra_convs.{level - num_backbone_levels}')
        pairs += [(f'{ours}.conv.', f'input_proj.{level}.0.'),
                  (f'{ours}.gn.', f'input_proj.{level}.1.')]
    return pairs


def official_to_mmdeform(state_dict):
    """Their state dict -> ours, class rows untouched."""
    levels = sorted({int(k.split('.')[1]) for k in state_dict if k.startswith('input_proj.')})
    # Backbone levels are 1x1 projections; the 4th level of the multi-scale model is a 3x3 conv.
    num_backbone_levels = sum(
        state_dict[f'input_proj.{level}.0.weight'].shape[-1] == 1 for level in levels)
    state_dict = {k: v for k, v in state_dict.items() if not DECODER_HEAD_ALIASES.match(k)}
    pairs = input_projection_pairs(num_backbone_levels, len(levels)) + OFFICIAL_PAIRS
    converted = rename_keys(state_dict, reversed_pairs(pairs), LAYOUT)
    # Their backbone has frozen BatchNorms, which count no batches; mmdet's BN has the buffer.
    for key in list(converted):
        if key.startswith('backbone.') and key.endswith('.running_var'):
            converted[key[:-len('running_var')] + 'num_batches_tracked'] = torch.tensor(0)
    return converted


def mmdeform_to_official(state_dict):
    """Our state dict -> theirs, without the BatchNorm batch counts (their BNs are frozen) and
    without the decoder's aliases of the heads."""
    num_backbone_levels = len({k.split('.')[2] for k in state_dict if k.startswith('neck.convs.')})
    num_extra = len({k.split('.')[2] for k in state_dict if k.startswith('neck.extra_convs.')})
    pairs = input_projection_pairs(num_backbone_levels, num_backbone_levels + num_extra)
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith('.num_batches_tracked')}
    return rename_keys(state_dict, pairs + OFFICIAL_PAIRS, 'an mmdeform checkpoint')
