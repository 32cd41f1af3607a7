"""One-to-one matching of queries to ground truths (DETR eq. 1, used by Deformable DETR)."""
import torch
from mmdet.models.task_modules import AssignResult, BaseAssigner

from mmdeform.registry import TASK_UTILS
from .batched_matching import hungarian_matches, summed_cost


@TASK_UTILS.register_module()
class HungarianAssigner(BaseAssigner):
    """Matches each gt to one prediction so that the summed match cost is minimal.

    Unmatched predictions are background. Same interface as mmdet's ``HungarianAssigner``.

    Args:
        match_costs (dict | list[dict]): Configs of the match costs (built through
            ``TASK_UTILS``); the matching cost is their sum.
    """

    def __init__(self, match_costs):
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not match_costs:
            raise ValueError('match_costs must not be empty')
        self.match_costs = [TASK_UTILS.build(cfg) for cfg in match_costs]

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
