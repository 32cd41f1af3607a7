"""Every config in configs/ablations/ builds the ablation it names, takes one optimizer step
and predicts.

To keep CI fast the models are shrunk (ResNet-18, one encoder layer and two decoder layers, the
fewest with an auxiliary loss); what each ablation changes (sampling points, levels, own-level
attention, neck) is kept and checked.
"""
import glob
import os

import pytest
from detector_checks import build_detector, train_one_step_and_predict
from mmengine.config import Config

ROOT = os.path.dirname(os.path.dirname(__file__))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'ablations', '*.py')))
# What each config changes, as read back from the built model.
ABLATIONS = {
    'deformable_detr_r50_single_scale_k1.py':
    dict(levels=1, points=1, encoder_own_level_only=False, neck='ChannelMapper'),
    'deformable_detr_r50_no_ms_attn_k1.py':
    dict(levels=4, points=1, encoder_own_level_only=True, neck='ChannelMapper'),
    'deformable_detr_r50_no_ms_attn.py':
    dict(levels=4, points=4, encoder_own_level_only=True, neck='ChannelMapper'),
    'deformable_detr_r50_fpn.py':
    dict(levels=4, points=4, encoder_own_level_only=False, neck='FPN'),
    'deformable_detr_r50_bifpn.py':
    dict(levels=4, points=4, encoder_own_level_only=False, neck='BiFPN'),
}


def shrink(cfg):
    """ResNet-18 (its stage i has 64 * 2^i channels), one encoder and two decoder layers."""
    cfg.model.backbone.depth = 18
    cfg.model.neck.in_channels = [64 * 2**i for i in cfg.model.backbone.out_indices]
    cfg.model.encoder.num_layers = 1
    cfg.model.decoder.num_layers = 2
    return cfg


def ablation_of(model):
    encoder_attn = model.encoder.layers[0].self_attn
    decoder_attn = model.decoder.layers[0].cross_attn
    assert decoder_attn.num_levels == encoder_attn.num_levels
    assert decoder_attn.num_points == encoder_attn.num_points
    assert not decoder_attn.own_level_only  # object queries lie on no level
    return dict(levels=encoder_attn.num_levels, points=encoder_attn.num_points,
                encoder_own_level_only=encoder_attn.own_level_only,
                neck=type(model.neck).__name__)


def test_every_ablation_is_listed():
    assert sorted(map(os.path.basename, CONFIGS)) == sorted(ABLATIONS)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_ablation_trains_one_step_and_predicts(path):
    cfg = shrink(Config.fromfile(path))
    model = build_detector(cfg)
    assert ablation_of(model) == ABLATIONS[os.path.basename(path)]
    train_one_step_and_predict(model, cfg)
