"""config.json in both of its forms against our configs: the hub's five checkpoints each match
the config of their variant, and what differs is named."""
import os

import pytest
from mmengine.config import Config
from transformers import DeformableDetrConfig

from mmdeform.converters import (config_architecture, hf_architecture, hf_config_json,
                                 matching_config)
from mmdeform.converters.hf_config import differences, hf_dropouts, our_configs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CONFIGS = our_configs(ROOT)
COCO_ID2LABEL = {str(i): f'category {i}' for i in range(91)}
# The hub's SenseTime/deformable-detr* checkpoints: what their config.json (transformers 4.x,
# timm's resnet50) sets beyond the defaults, and the config of ours each one is.
HUB = {
    'deformable-detr': ({}, 'deformable_detr_r50.py'),
    'deformable-detr-single-scale': (dict(num_feature_levels=1),
                                     'deformable_detr_r50_single_scale.py'),
    'deformable-detr-single-scale-dc5': (dict(num_feature_levels=1, dilation=True),
                                         'deformable_detr_r50_single_scale_dc5.py'),
    'deformable-detr-with-box-refine': (dict(with_box_refine=True),
                                        'deformable_detr_r50_refine.py'),
    'deformable-detr-with-box-refine-two-stage': (dict(with_box_refine=True, two_stage=True),
                                                  'deformable_detr_r50_2stage.py'),
}


def hub_config(**settings):
    """A config.json as transformers 4.x wrote the hub's."""
    return dict(dict(model_type='deformable_detr', use_timm_backbone=True, backbone='resnet50',
                     use_pretrained_backbone=True, dilation=False, d_model=256,
                     two_stage_num_proposals=300, id2label=COCO_ID2LABEL), **settings)


@pytest.mark.parametrize('name', HUB)
def test_hub_configs_match_their_variant(name):
    settings, expected = HUB[name]
    for config in (hub_config(**settings),
                   # as transformers 5.x writes the same (backbone_config of timm_backbone)
                   DeformableDetrConfig(num_labels=91, **settings).to_dict()):
        path, diffs = matching_config(hf_architecture(config), CONFIGS)
        assert (os.path.basename(path), diffs) == (expected, [])


def test_differences_are_named():
    path, diffs = matching_config(hf_architecture(hub_config(decoder_layers=3, d_model=128)),
                                  CONFIGS)
    assert os.path.basename(path) == 'deformable_detr_r50.py'
    assert ('decoder_layers', 3, 6) in diffs and ('d_model', 128, 256) in diffs
    config = hub_config(position_embedding_type='learned', id2label={'0': 'cat', '1': 'dog'})
    assert {key for key, _, _ in matching_config(hf_architecture(config), CONFIGS)[1]} == \
        {'position_embedding_type', 'num_classes'}


def test_mmdet_dilation_is_not_dc5():
    """mmdet's strides/dilations dilate the last stage's first block too: not the authors' DC5."""
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50_single_scale.py'))
    cfg.model.backbone.update(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
    dc5 = hf_architecture(hub_config(num_feature_levels=1, dilation=True))
    assert [key for key, _, _ in differences(dc5, config_architecture(cfg))] == ['dilation']


@pytest.mark.parametrize('path', CONFIGS)
def test_written_config_reads_back(path):
    cfg = Config.fromfile(path)
    architecture = config_architecture(cfg)
    for timm in (False, True):
        written = hf_config_json(architecture, [f'class {i}' for i in range(80)], timm,
                                 hf_dropouts(cfg))
        assert hf_architecture(written) == architecture
        # transformers reads it too, the authors' dropouts included
        hf = DeformableDetrConfig.from_dict(written)
        assert (hf.dropout, hf.attention_dropout, hf.activation_dropout) == (0.1, 0.1, 0.1)


def test_what_hugging_face_cannot_express_is_refused():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'ablations',
                                       'deformable_detr_r50_fpn.py'))
    with pytest.raises(ValueError, match='input_proj'):
        hf_config_json(config_architecture(cfg), ['c'] * 80)


def test_two_stage_without_refinement_is_refused():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py'))
    cfg.model.with_box_refine = False
    architecture = config_architecture(cfg)
    assert architecture['two_stage'] and not architecture['with_box_refine']
    with pytest.raises(ValueError, match='two-stage without box refinement'):
        hf_config_json(architecture, ['c'] * 80)


@pytest.mark.parametrize('backbone_config, message', [
    (dict(model_type='timm_backbone', backbone='efficientnet_b0'), 'efficientnet_b0'),
    (dict(model_type='swin'), 'swin'),
])
def test_unsupported_backbones_are_named(backbone_config, message):
    with pytest.raises(ValueError, match=message):
        hf_architecture(dict(model_type='deformable_detr', backbone_config=backbone_config))


def test_architecture_fields_have_one_type_each():
    """Every field holds one type whichever side it describes (None where unknown), mmdet's
    dilation included."""
    mmdet_dilation = Config.fromfile(os.path.join(ROOT, 'configs',
                                                  'deformable_detr_r50_single_scale.py'))
    mmdet_dilation.model.backbone.update(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
    architectures = [config_architecture(Config.fromfile(path)) for path in CONFIGS] + \
        [config_architecture(mmdet_dilation)] + \
        [hf_architecture(hub_config(**settings)) for settings, _ in HUB.values()]
    for key in architectures[0]:
        types = {type(architecture[key]) for architecture in architectures} - {type(None)}
        assert len(types) == 1, (key, types)
    assert all(isinstance(architecture['dilation'], bool) for architecture in architectures)
