"""mmdet 3.3's Deformable DETR: its own configs, and the mmdet model equivalent to one of ours.

Our modules take mmdet's arguments and, but for the head (ours is DeformableDETRFocalHead),
keep mmdet's names, so one of our model configs merged into mmdet's config of the same variant,
with mmdet's head type, builds in scope mmdet a model with exactly our modules and state dict:
mmdet's config contributes only what our modules do not take (e.g. ``batch_first`` of mmcv's
attention). Our config's ``neck.bias=True`` carries over (mmdet's ChannelMapper takes it), so the
weights load strictly both ways.
"""
import os.path as osp

import mmdet
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from torch import nn

MMDET_CONFIG_DIR = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'deformable_detr')
# Our variants and mmdet's configs of them. mmdet has none for single-scale: its multi-scale one,
# given one level, is it.
MMDET_CONFIGS = {
    'single_scale': 'deformable-detr_r50_16xb2-50e_coco.py',
    'multi_scale': 'deformable-detr_r50_16xb2-50e_coco.py',
    'refine': 'deformable-detr-refine_r50_16xb2-50e_coco.py',
    'two_stage': 'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
}
# mmdet's two-stage embeds proposals with 128 sine features per coordinate whatever the width.
MMDET_TWO_STAGE_DIMS = 256


def mmdet_config(variant: str) -> Config:
    """mmdet's own config of one of our variants (a key of ``MMDET_CONFIGS``)."""
    if variant not in MMDET_CONFIGS:
        raise ValueError(f'unknown variant {variant!r}; known: {", ".join(MMDET_CONFIGS)}')
    return Config.fromfile(osp.join(MMDET_CONFIG_DIR, MMDET_CONFIGS[variant]))


def variant_of(model_cfg: dict) -> str:
    """Which of ``MMDET_CONFIGS`` a DeformableDETR model config is."""
    if model_cfg.get('as_two_stage', False):
        return 'two_stage'
    if model_cfg.get('with_box_refine', False):
        return 'refine'
    return 'single_scale' if model_cfg.get('num_feature_levels', 4) == 1 else 'multi_scale'


def mmdet_model_cfg(model_cfg: dict) -> ConfigDict:
    """The config of mmdet's Deformable DETR equivalent to our ``model_cfg``."""
    variant = variant_of(model_cfg)
    dims = model_cfg.get('bbox_head', {}).get('embed_dims', 256)
    if variant == 'two_stage' and dims != MMDET_TWO_STAGE_DIMS:
        raise ValueError(f"mmdet's two-stage Deformable DETR only runs with embed_dims="
                         f'{MMDET_TWO_STAGE_DIMS}, the config has {dims}')
    cfg = mmdet_config(variant)
    # Our head has a name of its own (DeformableDETRFocalHead); mmdet's config names its own.
    head_type = cfg.model.bbox_head.type
    cfg.merge_from_dict(dict(model=model_cfg))
    cfg.model.bbox_head.type = head_type
    return cfg.model


def build_mmdet_equivalent(model: nn.Module, model_cfg: dict) -> nn.Module:
    """mmdet's Deformable DETR equivalent to ``model`` (built from ``model_cfg``), holding its
    weights, on its device and in its mode (train or eval)."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        equivalent = MMDET_MODELS.build(mmdet_model_cfg(model_cfg))
    equivalent.load_state_dict(model.state_dict(), strict=True)
    device = next(model.parameters()).device
    return equivalent.to(device).train(model.training)
