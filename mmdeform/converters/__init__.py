"""Checkpoint conversion between our layout and mmdet's, the authors' or Hugging Face's: the key
maps, the COCO category-id class rows, the config matching and the checkpoint writer that the
command lines in tools/model_converters/ share."""
from .coco_classes import (COCO_CATEGORY_IDS, COCO_CLASSES, category_ids_to_classes,
                           class_names_of_category_ids)
from .hf_config import config_architecture, hf_architecture, hf_config_json, matching_config
from .hf_processor import hf_preprocessor_config
from .huggingface import (hf_class_names, hf_to_mmdeform, load_hf_folder, mmdeform_to_hf,
                          save_hf_folder)
from .mmdet import mmdet_to_mmdeform
from .official import mmdeform_to_official, official_to_mmdeform
from .writer import save_converted_checkpoint

__all__ = [
    'COCO_CATEGORY_IDS', 'COCO_CLASSES', 'category_ids_to_classes', 'class_names_of_category_ids',
    'config_architecture', 'hf_architecture', 'hf_config_json', 'matching_config',
    'hf_preprocessor_config', 'hf_class_names', 'hf_to_mmdeform', 'load_hf_folder',
    'mmdeform_to_hf', 'save_hf_folder', 'mmdet_to_mmdeform', 'mmdeform_to_official',
    'official_to_mmdeform', 'save_converted_checkpoint'
]
