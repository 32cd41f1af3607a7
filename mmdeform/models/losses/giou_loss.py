"""(G)IoU of boxes and mmdet's GIoU loss, computed without making the host wait for the device.

mmdet's ``bbox_overlaps`` copies its ``eps`` to the device with ``new_tensor`` (a blocking copy
on CUDA), and mmdet's ``GIoULoss`` tests its weights on the host: each is a synchronization, once
per matched image and layer. The values here are mmdet's, bit for bit.
"""
import torch
from mmdet.models.losses import GIoULoss as MMDetGIoULoss
from mmdet.models.losses.utils import weighted_loss

from mmdeform.registry import MODELS


def box_overlaps(boxes1, boxes2, mode='iou', is_aligned=False, eps=1e-6):
    """mmdet's ``bbox_overlaps`` of (..., m, 4) and (..., n, 4) (x1, y1, x2, y2) boxes: (..., m, n)
    pairwise, or (..., m) row by row if ``is_aligned``. ``mode`` is 'iou', 'iof' (over the area
    of ``boxes1``) or 'giou'."""
    if mode not in ('iou', 'iof', 'giou'):
        raise ValueError(f"mode must be 'iou', 'iof' or 'giou', got {mode!r}")
    if is_aligned and boxes1.shape[-2] != boxes2.shape[-2]:
        raise ValueError(f'aligned boxes must be as many: {boxes1.shape[-2]} != {boxes2.shape[-2]}')
    if not is_aligned:
        boxes1, boxes2 = boxes1[..., :, None, :], boxes2[..., None, :, :]
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    wh = (torch.min(boxes1[..., 2:], boxes2[..., 2:]) -
          torch.max(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - overlap if mode != 'iof' else area1.expand_as(overlap)
    union = union.clamp(min=eps)
    ious = overlap / union
    if mode != 'giou':
        return ious
    enclose_wh = (torch.max(boxes1[..., 2:], boxes2[..., 2:]) -
                  torch.min(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    enclose_area = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return ious - (enclose_area - union) / enclose_area


@weighted_loss
def giou_loss(pred, target, eps=1e-7):
    return 1 - box_overlaps(pred, target, mode='giou', is_aligned=True, eps=eps)


@MODELS.register_module()
class GIoULoss(MMDetGIoULoss):
    """mmdet's ``GIoULoss`` (same arguments and defaults). Without ``weight`` it makes the host
    wait for nothing; with ``weight`` it is mmdet's, which reads the weights on the host."""

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None,
                **kwargs):
        if weight is not None:
            return super().forward(pred, target, weight, avg_factor, reduction_override,
                                   **kwargs)
        assert reduction_override in (None, 'none', 'mean', 'sum')
        return self.loss_weight * giou_loss(pred, target, eps=self.eps,
                                            reduction=reduction_override or self.reduction,
                                            avg_factor=avg_factor, **kwargs)
