"""Parity with mmdet 3.3's Deformable DETR, variant by variant: the same weights (carried over
by mmdeform/converters/mmdet.py) give the same losses and predictions."""
import copy
import os

import pytest
import torch
from mmdet.models.losses import FocalLoss
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdeform.converters import mmdet_to_mmdeform
from mmdeform.models.dense_heads.deformable_detr_head import one_hot_targets
from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules
from mmdeform.utils.mmdet_equivalent import mmdet_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
# mmdet's two-stage embeds boxes with 128 features per coordinate whatever embed_dims is, so it
# only runs with embed_dims=256.
DIMS = dict(single_scale=64, multi_scale=64, refine=64, two_stage=256,
            two_stage_without_refine=256)
OUR_CONFIGS = {
    'single_scale': 'deformable_detr_r50_single_scale.py',
    'multi_scale': 'deformable_detr_r50.py',
    'refine': 'deformable_detr_r50_refine.py',
    'two_stage': 'deformable_detr_r50_2stage.py',
}
# Variants our configs and mmdet's get by one change: (config variant, model overrides).
DERIVED = {'two_stage_without_refine': ('two_stage', dict(with_box_refine=False))}


def small(cfg, levels, dims=64):
    """The model of a config as ResNet-18, 2+2 layers, 20 queries, no dropout."""
    channels = [128, 256, 512][-min(levels, 3):]
    attn = dict(embed_dims=dims, num_levels=levels, dropout=0.0)
    ffn = dict(embed_dims=dims, feedforward_channels=128, ffn_drop=0.0)
    cfg.merge_from_dict(dict(model=dict(
        num_queries=20,
        num_feature_levels=levels,
        backbone=dict(depth=18, init_cfg=None, out_indices=tuple(range(4 - len(channels), 4))),
        neck=dict(in_channels=channels, out_channels=dims, num_outs=levels,
                  norm_cfg=dict(type='GN', num_groups=8)),
        encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=2, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=dims, num_heads=8, dropout=0.0),
            cross_attn_cfg=attn, ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=dims // 2, normalize=True, offset=-0.5),
        bbox_head=dict(num_classes=5, embed_dims=dims))))
    return cfg.model


def small_variant(cfg_of, variant):
    """``cfg_of(config variant)``'s model made small, with ``variant``'s overrides."""
    source, overrides = DERIVED.get(variant, (variant, {}))
    levels = 1 if variant == 'single_scale' else 4
    return dict(small(cfg_of(source), levels, DIMS[variant]), **overrides)


def build_ours(variant):
    register_all_modules()
    cfg = small_variant(
        lambda source: Config.fromfile(os.path.join(ROOT, 'configs', OUR_CONFIGS[source])),
        variant)
    with DefaultScope.overwrite_default_scope('mmdeform'):
        return MODELS.build(cfg)


def build_mmdet(variant):
    """The model of mmdet's own config of the variant, made small."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MMDET_MODELS.build(small_variant(mmdet_config, variant))


def pair(variant):
    torch.manual_seed(0)
    theirs = build_mmdet(variant)
    theirs.init_weights()
    ours = build_ours(variant)
    ours.load_state_dict(mmdet_to_mmdeform(theirs.state_dict()), strict=True)
    return ours, theirs


def batch(shapes, num_gts, batch_shape=(64, 80)):
    """Images padded to one batch shape, with random boxes (absolute xyxy) and labels."""
    inputs = torch.randn(len(shapes), 3, *batch_shape)
    samples = []
    for (h, w), n in zip(shapes, num_gts):
        sample = DetDataSample()
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), batch_input_shape=batch_shape,
                                 pad_shape=batch_shape, scale_factor=(1.0, 1.0)))
        xy = torch.rand(n, 2) * torch.tensor([w, h]) * 0.7
        wh = (torch.rand(n, 2) * 0.3 + 0.05) * torch.tensor([w, h])
        sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], -1),
                                           labels=torch.randint(0, 5, (n, )))
        samples.append(sample)
    return inputs, samples


VARIANTS = ['single_scale', 'multi_scale', 'refine', 'two_stage', 'two_stage_without_refine']
BATCHES = {
    'padded batch': ([(64, 80), (48, 72)], [3, 5]),
    'image without objects': ([(64, 80), (64, 80)], [0, 2]),
    'batch of 1': ([(56, 80)], [4]),
}


@pytest.fixture(scope='module', params=VARIANTS)
def models(request):
    return pair(request.param)


@pytest.mark.parametrize('shapes, num_gts', BATCHES.values(), ids=BATCHES.keys())
def test_same_losses_as_mmdet(models, shapes, num_gts):
    ours, theirs = models
    ours.train()
    theirs.train()
    torch.manual_seed(1)
    inputs, samples = batch(shapes, num_gts)
    with DefaultScope.overwrite_default_scope('mmdet'):
        expected = theirs.loss(inputs, copy.deepcopy(samples))
    with DefaultScope.overwrite_default_scope('mmdeform'):
        losses = ours.loss(inputs, samples)
    assert losses.keys() == expected.keys()
    for key in expected:
        # mmdet's class losses have shape (1, ) where its normalizer is a tensor; ours are 0-d.
        torch.testing.assert_close(losses[key], expected[key].reshape(()), rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f'{key}: {m}')
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in ours.named_parameters() if p.requires_grad and 'backbone' not in n)


def test_class_loss_takes_one_hot_targets(models, monkeypatch):
    """mmdet's FocalLoss sends class-index targets on CUDA to mmcv's compiled kernel, which
    mmcv-lite lacks; one-hot targets (as many dimensions as the logits) go to its PyTorch
    formula on any device. Every class loss, the first stage's included, gets them."""
    ours, _ = models
    loss_cls = ours.bbox_head.loss_cls
    assert isinstance(loss_cls, FocalLoss)
    targets = []
    forward = loss_cls.forward
    monkeypatch.setattr(loss_cls, 'forward', lambda pred, target, *args, **kwargs:
                        targets.append((pred.shape, target.shape)) or
                        forward(pred, target, *args, **kwargs))
    ours.train()
    inputs, samples = batch(*BATCHES['padded batch'])
    with DefaultScope.overwrite_default_scope('mmdeform'):
        losses = ours.loss(inputs, samples)
    assert len(targets) == sum(key.endswith('loss_cls') for key in losses)
    assert all(pred == target for pred, target in targets)


def test_one_hot_focal_loss_equals_mmdets_on_class_indices():
    loss = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0)
    logits = torch.randn(40, 5)
    labels = torch.randint(0, 6, (40, ))  # 5: no object
    torch.testing.assert_close(loss(logits, one_hot_targets(labels, 5), avg_factor=7.0),
                               loss(logits, labels, avg_factor=7.0), rtol=0, atol=0)


@pytest.mark.parametrize('shapes, num_gts', BATCHES.values(), ids=BATCHES.keys())
def test_same_predictions_as_mmdet(models, shapes, num_gts):
    ours, theirs = models
    ours.eval()
    theirs.eval()
    torch.manual_seed(2)
    inputs, samples = batch(shapes, num_gts)
    with torch.no_grad():
        expected = theirs.predict(inputs, copy.deepcopy(samples))
        results = ours.predict(inputs, samples)
    for got, want in zip(results, expected):
        got, want = got.pred_instances, want.pred_instances
        assert len(got) == len(want) == 100
        torch.testing.assert_close(got.scores, want.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.bboxes, want.bboxes, rtol=1e-4, atol=1e-3)
        assert torch.equal(got.labels, want.labels)


def test_two_stage_without_refinement_shares_the_branches():
    """As in mmdet: one class and one box branch serve every decoder layer and the first
    stage."""
    ours = build_ours('two_stage_without_refine')
    assert ours.as_two_stage and not ours.with_box_refine
    assert len(ours.bbox_head.reg_branches) == 3  # 2 decoder layers + the first stage
    assert len({id(branch) for branch in ours.bbox_head.reg_branches}) == 1


def test_levels_mismatch_is_a_clear_error():
    cfg = small(Config.fromfile(os.path.join(ROOT, 'configs', OUR_CONFIGS['multi_scale'])), 4)
    cfg.num_feature_levels = 3
    register_all_modules()
    with DefaultScope.overwrite_default_scope('mmdeform'), \
            pytest.raises(ValueError, match='num_feature_levels=3'):
        MODELS.build(cfg)
