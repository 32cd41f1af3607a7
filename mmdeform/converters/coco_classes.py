"""COCO's 91 category ids -> our 80 classes (COCO's class names), for class branches trained the
authors' way.

The authors (and the Hugging Face checkpoints made from theirs) score 91 outputs indexed by COCO
category id (ids 0, 12, 26, ... unused); ours score the 80 classes in CocoDataset's order. Each
decoder class branch keeps the rows of the 80 used ids.

The two-stage first-stage branch is different: it is trained class-agnostic (every target
relabelled to class 0), so its row 0 is the objectness that picks the top-k proposals (our
``DeformableDETR.proposal_queries`` ranks by channel 0) and its other rows only ever learned
"no object". It keeps its first 80 rows: row 0 stays row 0, and the rest stay trained negatives,
so fine-tuning starts from the first-stage loss the authors' model had.
"""
import re

import torch
from mmdet.datasets import CocoDataset

from mmdeform.models.detectors import first_stage_branch

# The 80 COCO category ids in CocoDataset's class order.
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90
]
NUM_CATEGORY_IDS = 91
# Their names, the class names of every checkpoint converted from the authors' COCO models.
COCO_CLASSES = CocoDataset.METAINFO['classes']

_CLASS_BRANCH = re.compile(r'^bbox_head\.cls_branches\.(\d+)\.(weight|bias)$')


def category_ids_to_classes(state_dict):
    """One of our state dicts whose class branches have 91 category-id rows -> 80 class rows
    (a new dict; the first-stage branch keeps rows 0..79, see the module's docstring)."""
    first_stage = first_stage_branch(state_dict)
    converted = dict(state_dict)
    for key, value in state_dict.items():
        branch = _CLASS_BRANCH.match(key)
        if not branch:
            continue
        if value.shape[0] != NUM_CATEGORY_IDS:
            raise ValueError(f'{key} has {value.shape[0]} rows, not one per COCO category id '
                             f'({NUM_CATEGORY_IDS})')
        if int(branch[1]) == first_stage:
            converted[key] = value[:len(COCO_CATEGORY_IDS)]
        else:
            converted[key] = value[torch.tensor(COCO_CATEGORY_IDS)]
    return converted


def class_names_of_category_ids(id2label):
    """Our 80 class names from a 91-entry category-id -> name mapping (keys int or str)."""
    names = {int(k): v for k, v in id2label.items()}
    return tuple(names[i] for i in COCO_CATEGORY_IDS)
