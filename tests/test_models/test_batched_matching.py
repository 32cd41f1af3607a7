"""Matching a whole training step at once gives the losses and gradients of matching each layer
and image on its own: mmdet's Deformable DETR head (its own assigner, match costs and losses,
scipy per layer and image) is the reference."""
import copy
import os

import numpy as np
import pytest
import torch
from detector_checks import shrink_model
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

from mmdeform.models.task_modules.batched_matching import hungarian_matches
from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
NUM_CLASSES = 5
VARIANTS = {'one-stage': 'deformable_detr_r50.py', 'refine': 'deformable_detr_r50_refine.py',
            'two-stage': 'deformable_detr_r50_2stage.py'}


def test_each_matrix_solved_as_scipy_solves_it():
    shapes = [(8, 3), (8, 1), (5, 7), (20, 2)]
    costs = [torch.randn(shape) for shape in shapes]
    for (rows, cols), cost in zip(hungarian_matches(costs), costs):
        want_rows, want_cols = linear_sum_assignment(cost.numpy())
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(cols, want_cols)
    assert hungarian_matches([]) == []


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_cost_is_a_clear_error(bad):
    costs = [torch.randn(4, 2), torch.randn(6, 3)]
    costs[1][2, 1] = bad
    with pytest.raises(ValueError, match=r'cost matrix has 1 non-finite entries .* of 18'):
        hungarian_matches(costs)


@pytest.fixture(scope='module', params=VARIANTS)
def detector(request):
    return tiny_detector(request.param)


def tiny_detector(variant):
    register_all_modules()
    cfg = shrink_model(Config.fromfile(os.path.join(ROOT, 'configs', VARIANTS[variant])))
    cfg.model.bbox_head.num_classes = NUM_CLASSES
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return variant, model.train(), cfg.model


def mmdet_head(model, model_cfg):
    """mmdet's head with the same losses and matching; it has no weights the losses use."""
    head = model.bbox_head
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MMDET_MODELS.build(dict(
            type='DeformableDETRHead', num_classes=NUM_CLASSES, embed_dims=16,
            sync_cls_avg_factor=True, loss_cls=model_cfg.bbox_head.loss_cls,
            loss_bbox=model_cfg.bbox_head.loss_bbox, loss_iou=model_cfg.bbox_head.loss_iou,
            train_cfg=model_cfg.train_cfg, num_pred_layer=len(head.cls_branches),
            as_two_stage=head.as_two_stage))


def batch(num_gts, shapes=((96, 128), (80, 112), (96, 100))):
    """Images padded to (96, 128), each with ``num_gts[i]`` random boxes (absolute xyxy)."""
    inputs = torch.randn(len(num_gts), 3, 96, 128)
    samples = []
    for (h, w), n in zip(shapes, num_gts):
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), batch_input_shape=(96, 128)))
        top_left = torch.rand(n, 2) * torch.tensor([w, h]) * 0.7
        size = (torch.rand(n, 2) * 0.3 + 0.05) * torch.tensor([w, h])
        sample.gt_instances = InstanceData(bboxes=torch.cat([top_left, top_left + size], -1),
                                           labels=torch.randint(0, NUM_CLASSES, (n, )))
        samples.append(sample)
    return inputs, samples


def spec_normalizer_ratio(key, outputs, gts):
    """mmdet divides a layer's losses by its matched gts, the paper (SPEC.md) by all gts: they
    differ where an image has more gts than the layer has queries."""
    classes = outputs[2] if key.startswith('enc_') else outputs[0][0]
    num_queries = classes.shape[1]
    matched = sum(min(len(g), num_queries) for g in gts)
    return max(matched, 1) / max(sum(len(g) for g in gts), 1)


@pytest.mark.parametrize('num_gts', [(3, 0, 12), (2, 1), (0, 0)],
                         ids=['mixed, more gts than queries', 'one image each', 'no gts'])
def test_losses_and_gradients_equal_matching_each_layer_and_image(detector, num_gts):
    variant, model, model_cfg = detector
    torch.manual_seed(1)
    inputs, samples = batch(num_gts)
    hidden_states, references, enc_classes, enc_boxes = model.forward_transformer(
        model.extract_feat(inputs), samples)
    outputs = (*model.bbox_head(hidden_states, references), enc_classes, enc_boxes)
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]

    losses = model.bbox_head.loss_by_feat(*outputs, gts, metas)
    with DefaultScope.overwrite_default_scope('mmdet'):
        expected = mmdet_head(model, model_cfg).loss_by_feat(*outputs, copy.deepcopy(gts), metas)
    assert losses.keys() == expected.keys()
    assert ('enc_loss_cls' in losses) == (variant == 'two-stage')
    expected = {key: value * spec_normalizer_ratio(key, outputs, gts)
                for key, value in expected.items()}
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value.reshape(()), rtol=1e-6, atol=1e-7,
                                   msg=lambda m: f'{key}: {m}')

    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(sum(losses.values()), params, retain_graph=True,
                                allow_unused=True)
    expected_grads = torch.autograd.grad(sum(v.sum() for v in expected.values()), params,
                                         allow_unused=True)
    for param, grad, want in zip(params, grads, expected_grads):
        assert (grad is None) == (want is None)
        if grad is not None:
            torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-7)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize('sync_cls_avg_factor', [True, False])
@pytest.mark.parametrize('mine, theirs', [(5, 7), (0, 0), (0, 1)])
def test_normalizers_are_averaged_over_processes(monkeypatch, sync_cls_avg_factor, mine, theirs):
    """A second process with ``theirs`` target boxes, seen through torch.distributed as mmdet's
    reduce_mean uses it: the normalizers are 0-d device tensors of the mean, at least 1."""
    register_all_modules()
    with DefaultScope.overwrite_default_scope('mmdeform'):
        head = MODELS.build(dict(type='DeformableDETRFocalHead', num_classes=NUM_CLASSES,
                                 sync_cls_avg_factor=sync_cls_avg_factor))
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'get_world_size', lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, 'all_reduce',
                        lambda tensor, op=None, **kwargs: tensor.add_(theirs / 2))
    gts = [InstanceData(labels=torch.zeros(n, dtype=torch.long))
           for n in (mine // 2, mine - mine // 2)]
    cls_avg_factor, box_avg_factor = head.avg_factors(gts, torch.device('cpu'))
    assert cls_avg_factor.shape == box_avg_factor.shape == ()
    assert box_avg_factor.item() == max((mine + theirs) / 2, 1)
    assert cls_avg_factor.item() == max((mine + theirs) / 2 if sync_cls_avg_factor else mine, 1)
