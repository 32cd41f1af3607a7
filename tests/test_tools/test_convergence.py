"""The convergence study compares like with like: every model gets the demo's data, optimizer,
schedule and sizes, and mmdet's DETR keeps mmdet's own matcher and head."""
import os.path as osp
import sys

import numpy as np
import pytest
from mmengine.registry import DefaultScope

from mmdeform.registry import MODELS
from mmdeform.utils import Curve, register_all_modules

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))),
                            'tools', 'analysis_tools'))
import convergence  # noqa: E402


@pytest.fixture(scope='module')
def configs():
    register_all_modules()
    return {name: convergence.study_config(name, iters=300, val_interval=100)
            for name in convergence.MODELS}


def test_equal_budget(configs):
    reference = configs['two_stage']
    for name, cfg in configs.items():
        assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=300, val_interval=100)
        assert cfg.param_scheduler == reference.param_scheduler, name
        for scheduler in cfg.param_scheduler:
            assert not scheduler['by_epoch'] and scheduler.get('end', 0) <= 300, (name, scheduler)
        assert cfg.optim_wrapper == reference.optim_wrapper, name
        assert cfg.train_dataloader == reference.train_dataloader, name
        for key in ('depth', 'base_channels', 'init_cfg', 'frozen_stages', 'norm_eval'):
            assert cfg.model.backbone[key] == reference.model.backbone[key], (name, key)
        assert cfg.model.num_queries == reference.model.num_queries, name


def test_variants(configs):
    assert not configs['deformable_detr'].model.with_box_refine
    assert configs['refine'].model.with_box_refine and not configs['refine'].model.as_two_stage
    assert configs['two_stage'].model.as_two_stage


def test_detr_is_mmdets_with_the_demo_sizes(configs):
    cfg = configs['detr']
    with DefaultScope.overwrite_default_scope('mmdeform'):
        detr = MODELS.build(cfg.model)
    assert type(detr).__module__.startswith('mmdet.models')
    assert type(detr.bbox_head.assigner).__module__.startswith('mmdet.models')
    assert detr.bbox_head.num_classes == configs['two_stage'].model.bbox_head.num_classes
    assert len(detr.encoder.layers) == configs['two_stage'].model.encoder.num_layers
    assert detr.bbox_head.embed_dims == configs['two_stage'].model.bbox_head.embed_dims


def test_epoch_schedulers_are_stretched_to_the_iterations():
    per_epoch = 100  # a 3-epoch schedule in 300 iterations
    assert convergence.in_iterations(
        dict(type='MultiStepLR', by_epoch=True, begin=0, end=3, milestones=[2], gamma=0.1),
        per_epoch) == dict(type='MultiStepLR', by_epoch=False, begin=0, end=300,
                           milestones=[200], gamma=0.1)
    # by_epoch defaults to True in mmengine; converted, the per-iteration flag has no use
    assert convergence.in_iterations(
        dict(type='CosineAnnealingLR', begin=1, end=3, T_max=2, convert_to_iter_based=True),
        per_epoch) == dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=300,
                           T_max=200)
    warmup = dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50)
    assert convergence.in_iterations(warmup, per_epoch) == warmup


def test_cfg_options_reach_every_model():
    for name in convergence.MODELS:
        cfg = convergence.study_config(name, 300, 100, {'optim_wrapper.optimizer.lr': 1e-4})
        assert cfg.optim_wrapper.optimizer.lr == 1e-4, name
        assert cfg.optim_wrapper.optimizer.type == 'AdamW', name  # merged, not replaced


def test_results_table_gives_ap_and_ap50_at_each_evaluation():
    curves = {'coco/bbox_mAP': Curve(np.array([250, 500]), np.array([0.1, 0.25])),
              'coco/bbox_mAP_50': Curve(np.array([250, 500]), np.array([0.2, 0.4]))}
    late = {key: Curve(curve.iters[1:], curve.values[1:]) for key, curve in curves.items()}
    header, rows = convergence.results_table([('a', curves), ('b', late)])
    assert header == ['model', '250 iterations', '500 iterations']
    assert rows == [['a', '0.100 / 0.200', '0.250 / 0.400'], ['b', 'n/a / n/a', '0.250 / 0.400']]
