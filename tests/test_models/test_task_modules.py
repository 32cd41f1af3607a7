"""Match costs and HungarianAssigner against mmdet's, plus the cases mmdet leaves cryptic."""
import itertools
import math

import mmdet.models.task_modules as mmdet_tm
import pytest
import torch
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch.testing import assert_close

from mmdeform.models.task_modules import BBoxL1Cost, FocalLossCost, HungarianAssigner, IoUCost
from mmdeform.registry import TASK_UTILS

IMG_META = dict(img_shape=(48, 64))  # (h, w)
NUM_CLASSES = 5
# Deformable DETR's matching cost.
MATCH_COSTS = [
    dict(type='FocalLossCost', weight=2.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0),
]


def random_boxes(n):
    """Absolute (x1, y1, x2, y2) boxes inside the image, at least 1 pixel wide and high."""
    h, w = IMG_META['img_shape']
    size = torch.tensor([w, h, w, h], dtype=torch.float32)
    top_left = torch.rand(n, 2) * 0.7
    extent = torch.rand(n, 2) * 0.3 + 0.02
    return torch.cat([top_left, top_left + extent], -1) * size


def problem(num_preds, num_gts):
    preds = InstanceData(scores=torch.randn(num_preds, NUM_CLASSES) * 2,
                         bboxes=random_boxes(num_preds))
    gts = InstanceData(labels=torch.randint(NUM_CLASSES, (num_gts, )), bboxes=random_boxes(num_gts))
    return preds, gts


@pytest.mark.parametrize('ours, theirs', [
    (FocalLossCost(weight=2.), mmdet_tm.FocalLossCost(weight=2.)),
    (FocalLossCost(alpha=0.5, gamma=1.5, eps=1e-8), mmdet_tm.FocalLossCost(alpha=0.5, gamma=1.5,
                                                                           eps=1e-8)),
    (BBoxL1Cost(weight=5., box_format='xywh'), mmdet_tm.BBoxL1Cost(weight=5., box_format='xywh')),
    (BBoxL1Cost(), mmdet_tm.BBoxL1Cost()),
    (IoUCost(weight=2.), mmdet_tm.IoUCost(weight=2.)),
    (IoUCost(iou_mode='iou'), mmdet_tm.IoUCost(iou_mode='iou')),
], ids=['focal', 'focal alpha/gamma/eps', 'l1 xywh', 'l1 xyxy', 'giou', 'iou'])
def test_cost_matches_mmdet(ours, theirs):
    preds, gts = problem(9, 4)
    cost = ours(preds, gts, IMG_META)
    assert cost.shape == (9, 4) and cost.dtype == torch.float32
    assert_close(cost, theirs(preds, gts, IMG_META))


def test_focal_cost_by_hand():
    # p = sigmoid(ln 3) = 0.75 for class 1; the gt of class 0 reads the other column.
    preds = InstanceData(scores=torch.tensor([[0., math.log(3.), -2.]]))
    gts = InstanceData(labels=torch.tensor([1, 0]))
    p = 0.75
    pos = 0.25 * (1 - p)**2 * -math.log(p)
    neg = 0.75 * p**2 * -math.log(1 - p)
    half = 0.25 * 0.5**2 * math.log(2) - 0.75 * 0.5**2 * math.log(2)  # p = 0.5 for class 0
    cost = FocalLossCost(weight=2.)(preds, gts)
    assert_close(cost, torch.tensor([[2 * (pos - neg), 2 * half]]))


def test_l1_cost_by_hand():
    # One 64 x 48 image-sized gt against a box shifted 16 px right: only the centre x differs.
    preds = InstanceData(bboxes=torch.tensor([[16., 0., 80., 48.]]))
    gts = InstanceData(bboxes=torch.tensor([[0., 0., 64., 48.]]))
    assert_close(BBoxL1Cost(box_format='xywh')(preds, gts, IMG_META), torch.tensor([[0.25]]))
    assert_close(BBoxL1Cost()(preds, gts, IMG_META), torch.tensor([[0.5]]))


def test_costs_fp32_under_autocast():
    preds, gts = problem(6, 3)
    half = InstanceData(scores=preds.scores.bfloat16(), bboxes=preds.bboxes.bfloat16())
    rounded = InstanceData(scores=half.scores.float(), bboxes=half.bboxes.float())
    for cfg in MATCH_COSTS:
        cost = TASK_UTILS.build(cfg)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = cost(half, gts, IMG_META)
        assert got.dtype == torch.float32
        assert_close(got, cost(rounded, gts, IMG_META))


@pytest.mark.parametrize('num_preds, num_gts', [(12, 3), (7, 7), (20, 9), (4, 6), (5, 0), (0, 3)])
def test_assigner_matches_mmdet(num_preds, num_gts):
    ours = HungarianAssigner(MATCH_COSTS)
    theirs = mmdet_tm.HungarianAssigner(MATCH_COSTS)
    for _ in range(3):
        preds, gts = problem(num_preds, num_gts)
        got = ours.assign(preds, gts, IMG_META)
        want = theirs.assign(preds, gts, IMG_META)
        assert isinstance(got, mmdet_tm.AssignResult)
        assert got.num_gts == num_gts
        assert_close(got.gt_inds, want.gt_inds, rtol=0, atol=0)
        assert_close(got.labels, want.labels, rtol=0, atol=0)
        # Every gt (or every prediction, if fewer) is matched exactly once.
        matched = got.gt_inds[got.gt_inds > 0]
        assert len(matched) == len(matched.unique()) == min(num_preds, num_gts)


def test_no_gts_all_background():
    preds, gts = problem(5, 0)
    result = HungarianAssigner(MATCH_COSTS).assign(preds, gts, IMG_META)
    assert result.gt_inds.tolist() == [0] * 5
    assert result.labels.tolist() == [-1] * 5


@pytest.mark.parametrize('num_preds, num_gts', [(5, 3), (3, 4)])
def test_matching_is_optimal(num_preds, num_gts):
    # Brute force over every one-to-one matching of the smaller side into the larger.
    assigner = HungarianAssigner(MATCH_COSTS)
    preds, gts = problem(num_preds, num_gts)
    cost = torch.as_tensor(assigner.cost_matrix(preds, gts, IMG_META))
    tall = cost if num_preds >= num_gts else cost.T
    best = min(tall[list(rows), range(tall.shape[1])].sum()
               for rows in itertools.permutations(range(tall.shape[0]), tall.shape[1]))
    gt_inds = assigner.assign(preds, gts, IMG_META).gt_inds
    matched = gt_inds > 0
    total = cost[matched, gt_inds[matched] - 1]
    assert_close(total.sum(), best)


@pytest.mark.parametrize('registry', [TASK_UTILS, MMDET_TASK_UTILS], ids=['ours', 'mmdet'])
def test_built_from_config_is_ours(registry):
    # mmdet's DETR heads build through mmdet's TASK_UTILS; the default scope must redirect them.
    with DefaultScope.overwrite_default_scope('mmdeform'):
        assigner = registry.build(dict(type='HungarianAssigner', match_costs=MATCH_COSTS))
    assert type(assigner).__module__.startswith('mmdeform')
    assert all(type(c).__module__.startswith('mmdeform') for c in assigner.match_costs)
    assert [c.weight for c in assigner.match_costs] == [2.0, 5.0, 2.0]


@pytest.mark.parametrize('field, value', [('scores', math.nan), ('bboxes', math.inf)])
def test_non_finite_cost_raises(field, value):
    preds, gts = problem(6, 2)
    getattr(preds, field)[3, 0] = value
    with pytest.raises(ValueError, match='cost matrix has .* non-finite entries'):
        HungarianAssigner(MATCH_COSTS).assign(preds, gts, IMG_META)
