"""Checkpoint conversion between our layout and the authors' or Hugging Face's (both ways): the
key maps, the COCO category-id class rows and the config matching that the command lines in
tools/model_converters/ share."""
from .coco_classes import COCO_CATEGORY_IDS, category_ids_to_classes, class_names_of_category_ids
from .hf_config import config_architecture, hf_architecture, hf_config_json, matching_config
from .huggingface import (hf_class_names, hf_to_mmdeform, load_hf_folder, mmdeform_to_hf,
                          save_hf_folder)
from .official import mmdeform_to_official, official_to_mmdeform

__all__ = [
    'COCO_CATEGORY_IDS', 'category_ids_to_classes', 'class_names_of_category_ids',
    'config_architecture', 'hf_architecture', 'hf_config_json',
    'matching_config', 'hf_class_names', 'hf_to_mmdeform', 'load_hf_folder', 'mmdeform_to_hf',
    'save_hf_folder', 'mmdeform_to_official', 'official_to_mmdeform'
]
