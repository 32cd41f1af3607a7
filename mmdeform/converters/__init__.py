"""Checkpoint conversion between our layout and the authors', Hugging Face's (and back): the key
maps, the COCO category-id class rows and the config matching that the converters in
tools/model_converters/ share."""
from .coco_classes import (COCO_CATEGORY_IDS, category_ids_to_classes,
                           class_names_of_category_ids, first_stage_branch)
from .official import mmdeform_to_official, official_to_mmdeform

__all__ = [
    'COCO_CATEGORY_IDS', 'category_ids_to_classes', 'class_names_of_category_ids',
    'first_stage_branch', 'mmdeform_to_official', 'official_to_mmdeform'
]
