"""Converts a checkpoint released by the Deformable DETR authors to mmdeform.

Their models score 91 classes indexed by COCO category id; ours score the 80 COCO classes in
CocoDataset's order, so the class branches keep the rows of the 80 used ids; the two-stage
first-stage branch keeps its class-agnostic objectness in row 0 (mmdeform/converters). The
checkpoint names COCO's 80 classes.

    python tools/model_converters/official_to_mmdeform.py r50_deformable_detr-checkpoint.pth OUT.pth
    python tools/test.py configs/deformable_detr_r50.py OUT.pth
"""
import argparse
import sys

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint (its "model" holds the weights)')
    parser.add_argument('dst', help='where to write the mmdeform checkpoint')
    args = parser.parse_args(argv)
    from mmdeform.converters import (COCO_CLASSES, category_ids_to_classes, official_to_mmdeform,
                                     save_converted_checkpoint)
    from mmdeform.utils.checkpoint import load_checkpoint_file
    # Their checkpoints also store the training arguments as an argparse.Namespace.
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = load_checkpoint_file(args.src)
    state_dict = category_ids_to_classes(official_to_mmdeform(checkpoint.get('model', checkpoint)))
    print(save_converted_checkpoint(state_dict, args.dst, args.src, COCO_CLASSES))


if __name__ == '__main__':
    sys.exit(main())
