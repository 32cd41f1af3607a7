"""Hungarian matching of a whole training step with one device-to-host copy.

Every prediction layer (each decoder layer, and the first stage in two-stage) is matched to every
image's ground truths. The cost matrices are computed on the device, reach the host together in
one copy (the only point where the host waits for the device), are solved there with scipy, and
the matches go back to the device without the host waiting.
"""
import numpy as np
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment


def summed_cost(match_costs, pred_instances, gt_instances, img_meta=None):
    """The (num_preds, num_gts) sum of the match costs, on the predictions' device."""
    return sum(match_cost(pred_instances, gt_instances, img_meta) for match_cost in match_costs)


def check_finite(cost):
    """Raises on a NaN or inf host cost matrix: scipy's own message names neither the cause nor
    the assigner."""
    if not np.isfinite(cost).all():
        raise ValueError(
            f'HungarianAssigner: the cost matrix has {(~np.isfinite(cost)).sum()} non-finite '
            f'entries (NaN/inf) of {cost.size}; the predictions (scores or bboxes) are probably '
            f'NaN or inf, e.g. after the training diverged')


def hungarian_matches(costs):
    """The optimal one-to-one matching of each (P, G) cost matrix in ``costs`` (device tensors):
    a list of (rows, cols) int64 numpy arrays, rows ascending. All matrices are copied to the
    host in one copy; an empty list copies nothing."""
    if not costs:
        return []
    host = torch.cat([cost.detach().float().flatten() for cost in costs]).cpu().numpy()
    matches = []
    for cost, flat in zip(costs, np.split(host, np.cumsum([c.numel() for c in costs])[:-1])):
        matrix = flat.reshape(cost.shape)
        check_finite(matrix)
        matches.append(linear_sum_assignment(matrix))
    return matches


def to_device(host_tensor, device):
    """Copies a host tensor to ``device`` without the host waiting: on CUDA from pinned memory,
    which the copy engine reads asynchronously (the caching host allocator keeps it alive)."""
    if device.type == 'cuda':
        host_tensor = host_tensor.pin_memory()
    return host_tensor.to(device, non_blocking=True)


def match_layers(match_costs, layers, image_sizes, img_metas):
    """Matches every layer's predictions to every image's ground truths.

    Args:
        match_costs (list): the assigner's match costs, called as
            ``cost(pred_instances, gt_instances, img_meta)``.
        layers (list[tuple]): per layer, class logits (N, Q, C), boxes (N, Q, 4) as normalized
            (cx, cy, w, h), and the N images' gt ``InstanceData`` (``labels``, absolute xyxy
            ``bboxes``).
        image_sizes (Tensor): (N, 4) per image (W, H, W, H) on the predictions' device.
        img_metas (list[dict]): per image, passed to the costs.

    Returns:
        list[Tensor]: per layer, a (3, M) int64 device tensor of M matches: the query's index in
        the flattened (N * Q) predictions, the gt's index in the N images' concatenated gts, and
        the image's index.
    """
    costs, where = [], []
    with torch.no_grad():
        for layer, (classes, boxes, gt_instances) in enumerate(layers):
            for image, gts in enumerate(gt_instances):
                if len(gts) == 0:
                    continue
                preds = InstanceData(scores=classes[image],
                                     bboxes=bbox_cxcywh_to_xyxy(boxes[image]) * image_sizes[image])
                costs.append(summed_cost(match_costs, preds, gts, img_metas[image]))
                where.append((layer, image))
    per_layer = [[] for _ in layers]
    for (layer, image), (rows, cols) in zip(where, hungarian_matches(costs)):
        num_queries = layers[layer][1].shape[1]
        gt_start = sum(len(gts) for gts in layers[layer][2][:image])
        per_layer[layer].append(np.stack([image * num_queries + rows, gt_start + cols,
                                          np.full_like(rows, image)]))
    counts = [sum(m.shape[1] for m in matches) for matches in per_layer]
    host = np.concatenate([m for matches in per_layer for m in matches] or [np.zeros((3, 0))], 1)
    device = to_device(torch.from_numpy(host.astype(np.int64)), image_sizes.device)
    return list(device.split(counts, 1))
