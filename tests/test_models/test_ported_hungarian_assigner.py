"""mmdet 3.3's tests/test_models/test_task_modules/test_assigners/test_hungarian_assigner.py, run
against our ``HungarianAssigner`` and match costs: built from our registry, as a config under scope
``mmdeform`` builds them, with mmdet's assertions unchanged
(those repeated for each match cost written once, in ``assert_every_gt_assigned``)."""
from unittest import TestCase

import torch
from mmengine import ConfigDict
from mmengine.structures import InstanceData

from mmdeform.models.task_modules import match_costs as our_costs
from mmdeform.models.task_modules.hungarian_assigner import \
    HungarianAssigner as OurHungarianAssigner
from mmdeform.registry import TASK_UTILS


def HungarianAssigner(match_costs):  # noqa: N802 (stands for the class in mmdet's test bodies)
    assigner = TASK_UTILS.build(dict(type='HungarianAssigner', match_costs=match_costs))
    assert type(assigner) is OurHungarianAssigner
    for cost in assigner.match_costs:  # ours where we have one of that name
        ours = getattr(our_costs, type(cost).__name__, None)
        assert ours is None or type(cost) is ours
    return assigner


def two_gts_and_ten_predictions():
    """The inputs mmdet's box and class cost tests share."""
    gt_instances = InstanceData()
    gt_instances.bboxes = torch.FloatTensor([[0, 0, 5, 7], [3, 5, 7, 8]])
    gt_instances.labels = torch.LongTensor([1, 20])
    pred_instances = InstanceData()
    pred_instances.scores = torch.rand((10, 81))
    pred_instances.bboxes = torch.rand((10, 4))
    img_meta = dict(img_shape=(10, 8))
    return gt_instances, pred_instances, img_meta


class TestHungarianAssigner(TestCase):

    def assert_every_gt_assigned(self, match_costs, pred_instances, gt_instances, img_meta,
                                 num_gts):
        """mmdet's three assertions after an assignment with each of ``match_costs`` (a cost
        config, or a list of them summed)."""
        for match_cost in match_costs:
            with self.subTest(match_cost=match_cost):
                assign_result = HungarianAssigner(match_cost).assign(
                    pred_instances, gt_instances, img_meta=img_meta)
                self.assertTrue(torch.all(assign_result.gt_inds > -1))
                self.assertEqual((assign_result.gt_inds > 0).sum(), num_gts)
                self.assertEqual((assign_result.labels > -1).sum(), num_gts)

    def test_init(self):
        with self.assertRaises(AssertionError):
            HungarianAssigner([])

    def test_hungarian_match_assigner(self):
        match_costs = [
            dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ]
        assigner = HungarianAssigner(match_costs)

        # test no gt bboxes
        gt_instances = InstanceData()
        gt_instances.bboxes = torch.empty((0, 4)).float()
        gt_instances.labels = torch.empty((0, )).long()
        pred_instances = InstanceData()
        pred_instances.scores = torch.rand((10, 81))
        pred_instances.bboxes = torch.rand((10, 4))
        img_meta = dict(img_shape=(10, 8))

        assign_result = assigner.assign(
            pred_instances, gt_instances, img_meta=img_meta)
        self.assertTrue(torch.all(assign_result.gt_inds == 0))
        self.assertTrue(torch.all(assign_result.labels == -1))

        # test with gt bboxes
        gt_instances.bboxes = torch.FloatTensor([[0, 0, 5, 7], [3, 5, 7, 8]])
        gt_instances.labels = torch.LongTensor([1, 20])
        self.assert_every_gt_assigned([match_costs], pred_instances, gt_instances, img_meta,
                                      gt_instances.bboxes.size(0))

    def test_bbox_match_cost(self):
        gt_instances, pred_instances, img_meta = two_gts_and_ten_predictions()
        self.assert_every_gt_assigned(
            [ConfigDict(dict(type='IoUCost', iou_mode='iou')),
             ConfigDict(dict(type='BBoxL1Cost'))],
            pred_instances, gt_instances, img_meta, gt_instances.bboxes.size(0))

    def test_cls_match_cost(self):
        gt_instances, pred_instances, img_meta = two_gts_and_ten_predictions()
        self.assert_every_gt_assigned(
            [dict(type='FocalLossCost'), dict(type='ClassificationCost')],
            pred_instances, gt_instances, img_meta, gt_instances.bboxes.size(0))

    def test_mask_match_cost(self):
        gt_instances = InstanceData()
        gt_instances.masks = torch.randint(0, 2, (2, 10, 10)).long()
        gt_instances.labels = torch.LongTensor([1, 20])

        pred_instances = InstanceData()
        pred_instances.masks = torch.rand((4, 10, 10))
        pred_instances.scores = torch.rand((4, 25))
        img_meta = dict(img_shape=(10, 10))
        self.assert_every_gt_assigned(
            [dict(type='DiceCost'), dict(type='CrossEntropyLossCost'),
             dict(type='FocalLossCost', binary_input=True)],
            pred_instances, gt_instances, img_meta, gt_instances.masks.size(0))
