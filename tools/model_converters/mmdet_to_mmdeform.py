"""Converts an mmdet 3.x Deformable DETR checkpoint (any variant) to mmdeform.

The weights carry over (mmdeform/converters/mmdet.py); the training state (optimizer, message
hub) is dropped, and the class names are kept when the checkpoint has them.

    python tools/model_converters/mmdet_to_mmdeform.py IN.pth OUT.pth
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='mmdet checkpoint')
    parser.add_argument('dst', help='where to write the mmdeform checkpoint')
    args = parser.parse_args(argv)
    from mmdeform.converters import mmdet_to_mmdeform, save_converted_checkpoint
    from mmdeform.utils.checkpoint import load_checkpoint_file
    checkpoint = load_checkpoint_file(args.src)
    state_dict = mmdet_to_mmdeform(checkpoint.get('state_dict', checkpoint))
    classes = ((checkpoint.get('meta') or {}).get('dataset_meta') or {}).get('classes')
    print(save_converted_checkpoint(state_dict, args.dst, args.src, classes))


if __name__ == '__main__':
    sys.exit(main())
