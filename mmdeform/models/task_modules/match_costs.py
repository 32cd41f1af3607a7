"""Match costs of the Hungarian assigner; Deformable DETR uses 2 * focal + 5 * L1 + 2 * (-GIoU).

Same names, arguments and call interface as mmdet's, so mmdet configs work unchanged under scope
``mmdeform``. Each cost is called as ``cost(pred_instances, gt_instances, img_meta)`` and returns a
(num_preds, num_gts) fp32 matrix: ``scores`` are logits, ``bboxes`` absolute (x1, y1, x2, y2).
"""
import torch
from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh

from mmdeform.registry import TASK_UTILS
from ..losses import box_overlaps
from .batched_matching import to_device


@TASK_UTILS.register_module()
class FocalLossCost(BaseMatchCost):
    """Focal-loss difference at the gt's class: ``alpha (1-p)^gamma (-log p)`` (cost of calling it
    positive) minus ``(1-alpha) p^gamma (-log(1-p))`` (cost of calling it negative), p = sigmoid.

    Args:
        weight (float): Cost weight. Default 1.
        alpha (float): Focal alpha. Default 0.25.
        gamma (float): Focal gamma. Default 2.
        eps (float): Keeps the logs finite when p saturates. Default 1e-12.
    """

    def __init__(self, weight=1., alpha=0.25, gamma=2, eps=1e-12):
        super().__init__(weight=weight)
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps

    def __call__(self, pred_instances, gt_instances, img_meta=None, **kwargs):
        # fp32: in bf16/fp16 the log of p near 0 or 1 loses the digits that rank the queries.
        p = pred_instances.scores.float()[:, gt_instances.labels].sigmoid()
        pos = self.alpha * (1 - p).pow(self.gamma) * -(p + self.eps).log()
        neg = (1 - self.alpha) * p.pow(self.gamma) * -(1 - p + self.eps).log()
        return (pos - neg) * self.weight


@TASK_UTILS.register_module()
class BBoxL1Cost(BaseMatchCost):
    """L1 distance between boxes normalized by the image size (``img_meta['img_shape']``).

    Args:
        weight (float): Cost weight. Default 1.
        box_format (str): 'xyxy' compares corners, 'xywh' compares (cx, cy, w, h) as DETR does.
            Default 'xyxy'.
    """

    def __init__(self, weight=1., box_format='xyxy'):
        super().__init__(weight=weight)
        if box_format not in ('xyxy', 'xywh'):
            raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
        self.box_format = box_format

    def __call__(self, pred_instances, gt_instances, img_meta=None, **kwargs):
        pred_bboxes = pred_instances.bboxes.float()
        gt_bboxes = gt_instances.bboxes.float()
        if self.box_format == 'xywh':
            pred_bboxes = bbox_xyxy_to_cxcywh(pred_bboxes)
            gt_bboxes = bbox_xyxy_to_cxcywh(gt_bboxes)
        img_h, img_w = img_meta['img_shape']
        size = to_device(torch.tensor([img_w, img_h, img_w, img_h], dtype=gt_bboxes.dtype),
                         gt_bboxes.device)
        return torch.cdist(pred_bboxes / size, gt_bboxes / size, p=1) * self.weight


@TASK_UTILS.register_module()
class IoUCost(BaseMatchCost):
    """Negative IoU (or GIoU) between every prediction and gt.

    Args:
        iou_mode (str): 'iou', 'iof' or 'giou', as in ``bbox_overlaps``. Default 'giou'.
        weight (float): Cost weight. Default 1.
    """

    def __init__(self, iou_mode='giou', weight=1.):
        super().__init__(weight=weight)
        self.iou_mode = iou_mode

    def __call__(self, pred_instances, gt_instances, img_meta=None, **kwargs):
        # fp32: areas of pixel boxes overflow fp16. The paper's cost is 1 - GIoU; the constant
        # does not change the matching, so it is left out (as mmdet does).
        overlaps = box_overlaps(pred_instances.bboxes.float(), gt_instances.bboxes.float(),
                                mode=self.iou_mode)
        return -overlaps * self.weight
