"""Converts a checkpoint released by the Deformable DETR authors to mmdeform.

Their models score 91 classes indexed by COCO category id; ours score the 80 COCO classes in
CocoDataset's order, so the class branches keep the rows of the 80 used ids.

    python tools/model_converters/official_to_mmdeform.py r50_deformable_detr-checkpoint.pth OUT.pth
    python tools/test.py configs/deformable_detr_r50.py OUT.pth
"""
import argparse
import re
import sys

import torch

# The 80 COCO category ids in CocoDataset's class order.
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90
]

# (pattern, replacement) applied in order to each key; the first match wins.
RENAMES = [
    (r'^backbone\.0\.body\.', 'backbone.'),
    (r'^transformer\.level_embed$', 'level_embed'),
    (r'^transformer\.reference_points\.', 'reference_points_fc.'),
    (r'^transformer\.enc_output\.', 'memory_trans_fc.'),
    (r'^transformer\.enc_output_norm\.', 'memory_trans_norm.'),
    (r'^transformer\.pos_trans\.', 'pos_trans_fc.'),
    (r'^transformer\.pos_trans_norm\.', 'pos_trans_norm.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.self_attn\.', r'encoder.layers.\1.self_attn.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.norm1\.', r'encoder.layers.\1.norms.0.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.norm2\.', r'encoder.layers.\1.norms.1.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.linear1\.', r'encoder.layers.\1.ffn.layers.0.0.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.linear2\.', r'encoder.layers.\1.ffn.layers.1.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.self_attn\.', r'decoder.layers.\1.self_attn.attn.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.cross_attn\.', r'decoder.layers.\1.cross_attn.'),
    # Their decoder layer: self-attention -> norm2, cross-attention -> norm1, FFN -> norm3.
    (r'^transformer\.decoder\.layers\.(\d+)\.norm2\.', r'decoder.layers.\1.norms.0.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.norm1\.', r'decoder.layers.\1.norms.1.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.norm3\.', r'decoder.layers.\1.norms.2.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.linear1\.', r'decoder.layers.\1.ffn.layers.0.0.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.linear2\.', r'decoder.layers.\1.ffn.layers.1.'),
    (r'^query_embed\.', 'query_embedding.'),
    (r'^class_embed\.(\d+)\.', r'bbox_head.cls_branches.\1.'),
    # Their box MLP's three Linear layers sit at 0, 2, 4 of our Sequential (ReLUs between).
    (r'^bbox_embed\.(\d+)\.layers\.0\.', r'bbox_head.reg_branches.\1.0.'),
    (r'^bbox_embed\.(\d+)\.layers\.1\.', r'bbox_head.reg_branches.\1.2.'),
    (r'^bbox_embed\.(\d+)\.layers\.2\.', r'bbox_head.reg_branches.\1.4.'),
]
# The decoder holds aliases of the heads for refinement; the same tensors appear at the top.
ALIASES = re.compile(r'^transformer\.decoder\.(class_embed|bbox_embed)\.')


def rename(key, num_backbone_levels):
    """Our name for one of their keys (None: not part of the model)."""
    if ALIASES.match(key):
        return None
    projection = re.match(r'^input_proj\.(\d+)\.([01])\.(.*)$', key)
    if projection:
        level, layer, param = int(projection[1]), projection[2], projection[3]
        # Levels from backbone stages are 1x1 convs; the extra stride-64 level is a 3x3 conv.
        module = (f'neck.convs.{level}' if level < num_backbone_levels
                  else f'neck.extra_convs.{level - num_backbone_levels}')
        return f'{module}.{"conv" if layer == "0" else "gn"}.{param}'
    for pattern, replacement in RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise KeyError(f'unknown key in the official checkpoint: {key}')


def convert(state_dict):
    """Their state dict -> ours (80 classes)."""
    # Backbone levels = the 1x1 input projections; the 4th level of the multi-scale model is
    # a 3x3 conv on C5.
    levels = sorted({int(k.split('.')[1]) for k in state_dict if k.startswith('input_proj.')})
    num_backbone_levels = sum(
        state_dict[f'input_proj.{level}.0.weight'].shape[-1] == 1 for level in levels)
    converted = {}
    for key, value in state_dict.items():
        new_key = rename(key, num_backbone_levels)
        if new_key is None:
            continue
        if new_key.startswith('bbox_head.cls_branches.'):
            value = value[COCO_CATEGORY_IDS]
        converted[new_key] = value
        # Their backbone has frozen BatchNorms, which count no batches.
        if new_key.startswith('backbone.') and new_key.endswith('.running_var'):
            converted[new_key[:-len('running_var')] + 'num_batches_tracked'] = torch.tensor(0)
    return converted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint (its "model" holds the weights)')
    parser.add_argument('dst', help='where to write the mmdeform checkpoint')
    args = parser.parse_args(argv)
    from mmdeform.utils.checkpoint import load_checkpoint_file, save_checkpoint_file
    # Their checkpoints also store the training arguments as an argparse.Namespace.
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = load_checkpoint_file(args.src)
    state_dict = convert(checkpoint.get('model', checkpoint))
    save_checkpoint_file(dict(state_dict=state_dict, meta=dict(converted_from=args.src)),
                         args.dst)
    print(f'{len(state_dict)} tensors written to {args.dst}')


if __name__ == '__main__':
    sys.exit(main())
