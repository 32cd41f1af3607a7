"""box_overlaps and GIoULoss give mmdet's numbers bit for bit, and configs get ours."""
import pytest
import torch
from mmdet.models.losses import GIoULoss as MMDetGIoULoss
from mmdet.structures.bbox import bbox_overlaps
from mmengine.registry import DefaultScope

from mmdeform.models.losses import GIoULoss, box_overlaps
from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules


def random_boxes(*shape):
    """(x1, y1, x2, y2) boxes, some degenerate (zero width or height)."""
    top_left = torch.rand(*shape, 2) * 50
    size = torch.rand(*shape, 2) * 30
    size[..., :2, 0] = 0
    return torch.cat([top_left, top_left + size], -1)


@pytest.mark.parametrize('mode', ['iou', 'iof', 'giou'])
@pytest.mark.parametrize('shapes, aligned', [(((7, ), (5, )), False), (((6, ), (6, )), True),
                                             (((2, 7), (2, 3)), False), (((0, ), (4, )), False),
                                             (((3, ), (0, )), False), (((0, ), (0, )), True)])
def test_box_overlaps_are_mmdets(mode, shapes, aligned):
    boxes1, boxes2 = random_boxes(*shapes[0]), random_boxes(*shapes[1])
    got = box_overlaps(boxes1, boxes2, mode=mode, is_aligned=aligned)
    torch.testing.assert_close(got, bbox_overlaps(boxes1, boxes2, mode=mode, is_aligned=aligned),
                               rtol=0, atol=0)


def test_box_overlaps_bad_arguments():
    with pytest.raises(ValueError, match="mode must be 'iou', 'iof' or 'giou', got 'dice'"):
        box_overlaps(random_boxes(2), random_boxes(2), mode='dice')
    with pytest.raises(ValueError, match='aligned boxes must be as many: 2 != 3'):
        box_overlaps(random_boxes(2), random_boxes(3), is_aligned=True)
    with pytest.raises(ValueError, match='aligned boxes must be as many: 3 != 4'):
        box_overlaps(random_boxes(2, 3), random_boxes(2, 4), is_aligned=True)


@pytest.mark.parametrize('kwargs', [dict(), dict(avg_factor=torch.tensor(3.5)),
                                    dict(reduction_override='sum'),
                                    dict(reduction_override='none'),
                                    dict(weight=torch.rand(6)), dict(weight=torch.zeros(6, 4))])
def test_giou_loss_is_mmdets(kwargs):
    ours, theirs = GIoULoss(loss_weight=2.0), MMDetGIoULoss(loss_weight=2.0)
    pred, target = random_boxes(6).requires_grad_(), random_boxes(6)
    got = ours(pred, target, **kwargs)
    torch.testing.assert_close(got, theirs(pred, target, **kwargs), rtol=0, atol=0)
    grad, = torch.autograd.grad(got.sum(), pred)
    want, = torch.autograd.grad(theirs(pred, target, **kwargs).sum(), pred)
    torch.testing.assert_close(grad, want, rtol=0, atol=0)


def test_configs_get_ours():
    register_all_modules()
    with DefaultScope.overwrite_default_scope('mmdeform'):
        loss = MODELS.build(dict(type='GIoULoss', loss_weight=2.0))
    assert type(loss) is GIoULoss and loss.loss_weight == 2.0 and loss.eps == 1e-6
