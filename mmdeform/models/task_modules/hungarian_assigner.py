"""One-to-one matching of queries to ground truths (DETR eq. 1, used by Deformable DETR)."""
import torch
from mmdet.models.task_modules import AssignResult
from mmdet.models.task_modules import HungarianAssigner as MMDetHungarianAssigner
from mmengine.registry import DefaultScope

from mmdeform.registry import SCOPE, TASK_UTILS
from .batched_matching import hungarian_matches, summed_cost


@TASK_UTILS.register_module()
class HungarianAssigner(MMDetHungarianAssigner):
    """Matches each gt to one prediction so that the summed match cost is minimal.

    Unmatched predictions are background. mmdet's ``HungarianAssigner`` (same arguments and
    checks: an empty list of costs is an ``AssertionError``) that reports a non-finite cost matrix.

    Args:
        match_costs (dict | list[dict]): Configs of the match costs; the matching cost is their
            sum.
    """

    def __init__(self, match_costs):
        # Built in our scope whatever the caller's, so that the costs are ours (fp32) too.
        with DefaultScope.overwrite_default_scope(SCOPE):
            super().__init__(match_costs)

    def assign(self, pred_instances, gt_instances, img_meta=None, **kwargs):
        """Returns an ``AssignResult`` whose ``gt_inds`` is 0 for background and i + 1 for a
        prediction matched to gt i, and whose ``labels`` are the matched gt's label (-1 if none).
        """
        num_preds, num_gts = len(pred_instances), len(gt_instances)
        gt_labels = gt_instances.labels
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=gt_labels.device)
        labels = torch.full_like(gt_inds, -1)
        if num_preds > 0 and num_gts > 0:
            cost = self.cost_matrix(pred_instances, gt_instances, img_meta)
            pred_idx, gt_idx = (torch.from_numpy(idx).to(gt_labels.device)
                                for idx in hungarian_matches([cost])[0])
            gt_inds[pred_idx] = gt_idx + 1
            labels[pred_idx] = gt_labels[gt_idx]
        return AssignResult(num_gts, gt_inds, max_overlaps=None, labels=labels)

    def cost_matrix(self, pred_instances, gt_instances, img_meta=None):
        """The summed costs, (num_preds, num_gts), on the predictions' device."""
        return summed_cost(self.match_costs, pred_instances, gt_instances, img_meta)
