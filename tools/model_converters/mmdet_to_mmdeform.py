"""Converts an mmdet 3.x Deformable DETR checkpoint (any variant) to mmdeform.

mmdeform keeps mmdet's module names, so the weights carry over as they are, with one exception:
like the reference code, our input projections have a conv bias before GroupNorm, which mmdet
drops; the converter adds it as zeros (the same function). It also checks that the checkpoint is a
Deformable DETR one, drops the training state (optimizer, message hub) and writes a clean
checkpoint.

    python tools/model_converters/mmdet_to_mmdeform.py IN.pth OUT.pth
"""
import argparse
import sys


# Every Deformable DETR state dict has these; other detectors lack some of them.
REQUIRED_PREFIXES = ('backbone.', 'neck.', 'encoder.layers.', 'decoder.layers.',
                     'bbox_head.cls_branches.', 'bbox_head.reg_branches.', 'level_embed')


def convert(state_dict):
    """mmdet 3.x Deformable DETR state dict -> mmdeform state dict."""
    missing = [p for p in REQUIRED_PREFIXES if not any(k.startswith(p) for k in state_dict)]
    if missing:
        raise ValueError('not an mmdet 3.x Deformable DETR checkpoint: no keys start with '
                         + ', '.join(missing))
    converted = dict(state_dict)
    for key, weight in state_dict.items():
        if key.startswith('neck.') and key.endswith('.conv.weight'):
            converted.setdefault(key[:-len('weight')] + 'bias', weight.new_zeros(weight.shape[0]))
    return converted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='mmdet checkpoint')
    parser.add_argument('dst', help='where to write the mmdeform checkpoint')
    args = parser.parse_args(argv)
    from mmdeform.utils.checkpoint import load_checkpoint_file, save_checkpoint_file
    checkpoint = load_checkpoint_file(args.src)
    state_dict = convert(checkpoint.get('state_dict', checkpoint))
    meta = dict(converted_from=args.src, dataset_meta=checkpoint.get('meta', {}).get('dataset_meta'))
    save_checkpoint_file(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'{len(state_dict)} tensors written to {args.dst}')


if __name__ == '__main__':
    sys.exit(main())
