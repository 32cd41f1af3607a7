"""Property-based tests of HungarianAssigner with Deformable DETR's match costs: any number of
predictions and gts (zero included, more gts than predictions), degenerate boxes, saturated and
NaN scores. The result is a one-to-one matching as cheap as scipy's optimum on mmdet's costs, or
a ValueError for NaN costs."""
import mmdet.models.task_modules as mmdet_tm
import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

from mmdeform.models.task_modules import HungarianAssigner

IMG_META = dict(img_shape=(48, 64))  # (h, w)
NUM_CLASSES = 4
MATCH_COSTS = [
    dict(type='FocalLossCost', weight=2.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0),
]
# The same costs by mmdet: an independent cost matrix.
MMDET_COSTS = [mmdet_tm.FocalLossCost(weight=2.0),
               mmdet_tm.BBoxL1Cost(weight=5.0, box_format='xywh'),
               mmdet_tm.IoUCost(iou_mode='giou', weight=2.0)]
ASSIGNER = HungarianAssigner(MATCH_COSTS)
# Values a score (logit) can be set to: saturated, huge, NaN.
SPECIAL_SCORES = (float('inf'), -float('inf'), 1e4, -1e4, float('nan'))


def boxes(generator, n, degenerate):
    """n absolute (x1, y1, x2, y2) boxes, those in ``degenerate`` with zero width and/or
    height, or inverted (x2 < x1)."""
    h, w = IMG_META['img_shape']
    corners = torch.rand(n, 2, 2, generator=generator) * torch.tensor([w, h])
    result = torch.cat([corners.min(1).values, corners.max(1).values], -1)
    for index, kind in degenerate:
        if n:
            box = result[index % n]
            if kind == 'point':
                box[2:] = box[:2]
            elif kind == 'line':
                box[2] = box[0]
            else:  # inverted
                box[[0, 2]] = box[[2, 0]]
    return result


@st.composite
def problems(draw):
    num_preds, num_gts = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    edits = st.lists(st.tuples(st.integers(0, 100), st.sampled_from(['point', 'line', 'inverted'])),
                     max_size=3)
    scores = torch.randn(num_preds, NUM_CLASSES, generator=generator) * 3
    for row, column, value in draw(st.lists(st.tuples(
            st.integers(0, 100), st.integers(0, NUM_CLASSES - 1), st.sampled_from(SPECIAL_SCORES)),
            max_size=3)):
        if num_preds:
            scores[row % num_preds, column] = value
    preds = InstanceData(scores=scores, bboxes=boxes(generator, num_preds, draw(edits)))
    gts = InstanceData(labels=torch.randint(NUM_CLASSES, (num_gts, ), generator=generator),
                       bboxes=boxes(generator, num_gts, draw(edits)))
    return preds, gts


def mmdet_cost(preds, gts):
    return sum(cost(preds, gts, IMG_META) for cost in MMDET_COSTS).numpy()


@settings(max_examples=200)
@given(problem=problems())
def test_assignment_is_an_optimal_one_to_one_matching(problem):
    preds, gts = problem
    num_preds, num_gts = len(preds), len(gts)
    scores_used = preds.scores[:, gts.labels]
    event(f'{"more" if num_gts > num_preds else "no more"} gts than predictions')
    if scores_used.isnan().any():
        event('NaN cost')
        with pytest.raises(ValueError, match='cost matrix has .* non-finite entries'):
            ASSIGNER.assign(preds, gts, IMG_META)
        return
    result = ASSIGNER.assign(preds, gts, IMG_META)
    assert result.num_gts == num_gts
    assert result.gt_inds.shape == result.labels.shape == (num_preds, )
    matched = (result.gt_inds > 0).nonzero().squeeze(-1)
    matched_gts = result.gt_inds[matched] - 1
    # one-to-one, as many pairs as possible, each prediction labelled with its gt's label
    assert ((result.gt_inds >= 0) & (result.gt_inds <= num_gts)).all()
    assert len(matched_gts.unique()) == len(matched) == min(num_preds, num_gts)
    assert torch.equal(result.labels[matched], gts.labels[matched_gts])
    assert (result.labels[result.gt_inds == 0] == -1).all()
    if len(matched):
        cost = mmdet_cost(preds, gts)
        assert np.isfinite(cost).all()
        optimum = cost[linear_sum_assignment(cost)].sum()
        total = cost[matched.numpy(), matched_gts.numpy()].sum()
        assert total == pytest.approx(optimum, rel=1e-5, abs=1e-4)
