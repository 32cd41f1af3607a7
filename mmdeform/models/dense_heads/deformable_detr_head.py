"""The prediction head of Deformable DETR: class and box branches per decoder layer, Hungarian-
matched set losses (focal, L1, GIoU) with auxiliary losses, and top-k predictions."""
import copy

import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule, bias_init_with_prob, constant_init
from mmengine.structures import InstanceData
from torch import nn

from mmdeform.registry import MODELS, TASK_UTILS

from ..layers import Fp32Linear, refine_boxes
from ..task_modules.batched_matching import match_layers, to_device


def one_hot_targets(labels, num_classes):
    """(N, num_classes) one-hot class targets of class indices, ``num_classes`` for none.

    mmdet's FocalLoss computes one-hot targets in PyTorch on any device, whereas class indices on
    CUDA go to mmcv's compiled kernel, which mmcv-lite lacks. The numbers are the same.
    """
    return F.one_hot(labels, num_classes + 1)[:, :num_classes]


@MODELS.register_module()
class DeformableDETRFocalHead(BaseModule):
    """Class logits Linear(C, num_classes) and boxes MLP C-C-C-4, one pair per prediction layer.
    The box MLP computes in fp32 under autocast.

    Classes are scored by sigmoids, with the focal loss and cost by default. mmdet's
    ``DeformableDETRHead`` (which ``type='DeformableDETRHead'`` builds) defaults to a softmax
    over the classes plus background with a cross-entropy loss; this head has no softmax path,
    hence its own name. Its state dict is that of mmdet's head.

    Args:
        num_classes (int): number of object classes (no background class: sigmoid scores).
        embed_dims (int): C. Default 256.
        num_reg_fcs (int): hidden layers of the box MLP. Default 2.
        share_pred_layer (bool): one pair of branches for all layers (no box refinement).
            Set by the detector.
        num_pred_layer (int): decoder layers, +1 for the encoder's first stage in two-stage.
            Set by the detector.
        as_two_stage (bool): the last branch pair scores encoder pixels. Set by the detector.
        sync_cls_avg_factor (bool): average the class loss normalizer across processes.
        loss_cls, loss_bbox, loss_iou (dict): mmdet loss configs (focal, L1, GIoU).
        train_cfg (dict): ``assigner``, the matcher config.
        test_cfg (dict): ``max_per_img``, detections kept per image.
    """

    def __init__(self, num_classes, embed_dims=256, num_reg_fcs=2, share_pred_layer=False,
                 num_pred_layer=6, as_two_stage=False, sync_cls_avg_factor=True,
                 loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                               loss_weight=2.0),
                 loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                 loss_iou=dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
                     dict(type='FocalLossCost', weight=2.0),
                     dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                     dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
                 test_cfg=dict(max_per_img=100), init_cfg=None):
        super().__init__(init_cfg)
        if not loss_cls.get('use_sigmoid', False):
            raise ValueError('DeformableDETRFocalHead scores classes with sigmoids: loss_cls '
                             'needs use_sigmoid=True')
        self.num_classes = num_classes
        self.as_two_stage = as_two_stage
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.assigner = TASK_UTILS.build(train_cfg['assigner']) if train_cfg else None
        self.max_per_img = (test_cfg or {}).get('max_per_img', 100)

        cls_branch = nn.Linear(embed_dims, num_classes)
        # Box deltas in fp32 under autocast, hidden layers included: bf16 hidden features move
        # the deltas as much as rounding them to bf16 does (docs/deployment.md).
        reg_layers = []
        for _ in range(num_reg_fcs):
            reg_layers += [Fp32Linear(embed_dims, embed_dims), nn.ReLU()]
        reg_branch = nn.Sequential(*reg_layers, Fp32Linear(embed_dims, 4))
        if share_pred_layer:
            self.cls_branches = nn.ModuleList([cls_branch] * num_pred_layer)
            self.reg_branches = nn.ModuleList([reg_branch] * num_pred_layer)
        else:
            self.cls_branches = nn.ModuleList(
                [copy.deepcopy(cls_branch) for _ in range(num_pred_layer)])
            self.reg_branches = nn.ModuleList(
                [copy.deepcopy(reg_branch) for _ in range(num_pred_layer)])

    def init_weights(self):
        """Class prior 0.01; box deltas start at 0. The first box branch predicts small boxes
        (size bias -2) around 2-d references; two-stage references are boxes already (bias 0)."""
        for branch in self.cls_branches:
            nn.init.constant_(branch.bias, bias_init_with_prob(0.01))
        for branch in self.reg_branches:
            constant_init(branch[-1], 0, bias=0)
        if not self.as_two_stage:
            nn.init.constant_(self.reg_branches[0][-1].bias.data[2:], -2.0)
        self._is_init = True

    def forward(self, hidden_states, references):
        """Class logits (D, N, Q, num_classes) and boxes (D, N, Q, 4) as normalized (cx, cy, w, h).

        ``references[d]`` is the reference layer d refined: (x, y) points or (cx, cy, w, h) boxes.
        """
        classes, boxes = [], []
        for layer, hidden_state in enumerate(hidden_states):
            classes.append(self.cls_branches[layer](hidden_state))
            boxes.append(refine_boxes(references[layer], self.reg_branches[layer](hidden_state)))
        return torch.stack(classes), torch.stack(boxes)

    def loss(self, hidden_states, references, enc_outputs_class, enc_outputs_coord,
             batch_data_samples):
        gt_instances = [sample.gt_instances for sample in batch_data_samples]
        img_metas = [sample.metainfo for sample in batch_data_samples]
        all_classes, all_boxes = self(hidden_states, references)
        return self.loss_by_feat(all_classes, all_boxes, enc_outputs_class, enc_outputs_coord,
                                 gt_instances, img_metas)

    def loss_by_feat(self, all_classes, all_boxes, enc_classes, enc_boxes, gt_instances,
                     img_metas):
        """The last layer's losses as ``loss_*``, the auxiliary ones as ``d{i}.loss_*`` and
        the first stage's (every target relabelled to class 0) as ``enc_loss_*``.

        All layers are matched at once (:func:`match_layers`): the host waits for the device
        once per step, for the cost matrices."""
        if self.assigner is None:
            raise RuntimeError('DeformableDETRFocalHead computes losses only with a matcher: '
                               'set train_cfg=dict(assigner=...) in the model config')
        # Losses in fp32 under autocast too.
        layers = [(classes.float(), boxes.float(), gt_instances)
                  for classes, boxes in zip(all_classes, all_boxes)]
        prefixes = [f'd{layer}.' for layer in range(len(layers) - 1)] + ['']
        if enc_classes is not None:
            class_agnostic = [InstanceData(bboxes=gts.bboxes, labels=torch.zeros_like(gts.labels))
                              for gts in gt_instances]
            layers.append((enc_classes.float(), enc_boxes.float(), class_agnostic))
            prefixes.append('enc_')
        image_sizes = to_device(torch.tensor([self.image_size(m) * 2 for m in img_metas],
                                             dtype=torch.float32), all_boxes.device)
        matches = match_layers(self.assigner.match_costs, layers, image_sizes, img_metas)
        cls_avg_factor, box_avg_factor = self.avg_factors(gt_instances, all_boxes.device)
        losses = {}
        for prefix, layer, layer_matches in zip(prefixes, layers, matches):
            values = self.loss_by_feat_single(*layer, layer_matches, image_sizes, cls_avg_factor,
                                              box_avg_factor)
            losses.update({prefix + name: value
                           for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'), values)})
        return losses

    def avg_factors(self, gt_instances, device):
        """The normalizers of the class and box losses: the number of target boxes (its mean
        over processes; the class one only if ``sync_cls_avg_factor``), at least 1. 0-d device
        tensors, so that no process waits for the device to read them."""
        num_targets = torch.full((), float(sum(len(g) for g in gt_instances)), device=device)
        mean_targets = reduce_mean(num_targets)
        cls_avg_factor = mean_targets if self.sync_cls_avg_factor else num_targets
        return cls_avg_factor.clamp(min=1), mean_targets.clamp(min=1)

    def loss_by_feat_single(self, classes, boxes, gt_instances, matches, image_sizes,
                            cls_avg_factor, box_avg_factor):
        """Focal, L1 and GIoU losses of one layer, given its ``matches`` from
        :func:`match_layers`. The box losses see the matched queries only."""
        query, gt, image = matches
        gt_labels = torch.cat([g.labels for g in gt_instances])
        labels = torch.full((classes.shape[0] * classes.shape[1], ), self.num_classes,
                            dtype=torch.long, device=classes.device)
        labels[query] = gt_labels[gt]
        classes = classes.reshape(-1, classes.shape[-1])
        loss_cls = self.loss_cls(classes, one_hot_targets(labels, classes.shape[-1]),
                                 avg_factor=cls_avg_factor)

        scale = image_sizes[image]
        pred = boxes.reshape(-1, 4)[query]
        target = bbox_xyxy_to_cxcywh(torch.cat([g.bboxes for g in gt_instances])[gt] / scale)
        loss_bbox = self.loss_bbox(pred, target, avg_factor=box_avg_factor)
        loss_iou = self.loss_iou(bbox_cxcywh_to_xyxy(pred) * scale,
                                 bbox_cxcywh_to_xyxy(target) * scale, avg_factor=box_avg_factor)
        return loss_cls, loss_bbox, loss_iou

    @staticmethod
    def image_size(img_meta):
        """(W, H) of the image inside the padded batch."""
        height, width = img_meta['img_shape']
        return [width, height]

    def predict(self, hidden_states, references, batch_data_samples, rescale=True):
        """Top-``max_per_img`` (query, class) pairs of the last decoder layer per image."""
        layer = len(hidden_states) - 1  # in two-stage the encoder's branches come after it
        logits = self.cls_branches[layer](hidden_states[layer])
        boxes = refine_boxes(references[layer], self.reg_branches[layer](hidden_states[layer]))
        return [self.predict_single(l, b, s.metainfo, rescale)
                for l, b, s in zip(logits, boxes, batch_data_samples)]

    def predict_single(self, logits, boxes, img_meta, rescale=True):
        scores, index = logits.sigmoid().flatten().topk(min(self.max_per_img, logits.numel()))
        labels = index % self.num_classes
        boxes = bbox_cxcywh_to_xyxy(boxes[index // self.num_classes])
        # Scaled by Python numbers, column by column: a tensor of them would be a blocking
        # host-to-device copy on a GPU.
        width, height = self.image_size(img_meta)
        boxes[:, 0::2] = (boxes[:, 0::2] * width).clamp(min=0, max=width)
        boxes[:, 1::2] = (boxes[:, 1::2] * height).clamp(min=0, max=height)
        if rescale:
            x_scale, y_scale = img_meta['scale_factor']
            boxes[:, 0::2] /= x_scale
            boxes[:, 1::2] /= y_scale
        return InstanceData(bboxes=boxes, scores=scores, labels=labels)
