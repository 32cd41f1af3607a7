"""The score threshold to draw detections at: the one that maximizes F1 on a split.

AP50 ranks every detection; a drawing shows only those above one score. Drawn at the threshold
where F1 of COCO's matches at IoU 0.5 peaks, the drawing shows the AP50 matches that a single
threshold can show best: each missed object and each false or duplicate box costs the same.
"""
from dataclasses import dataclass

import numpy as np

from .coco_matches import unpack_flags


@dataclass(frozen=True)
class ScoreThreshold:
    """Draw the detections scoring above ``score_thr``; F1, precision and recall of those."""
    score_thr: float
    f1: float
    precision: float
    recall: float
    num_detections: int  # scoring above score_thr (detections COCO ignores included)
    num_gts: int


def best_f1_threshold(image_matches, params, iou_thr=0.5):
    """The score threshold that maximizes F1 of the detections above it.

    Args:
        image_matches (list[ImageMatches]): ``coco_matches.match_images`` of a split.
        params: the COCOeval parameters they were matched with; ``iou_thr`` one of its
            ``iouThrs``. The area range 'all' and the largest ``maxDets`` count, as for AP50.

    Returns:
        ScoreThreshold: ``score_thr`` halfway between the lowest score kept and the highest one
        left out (so that ``scores > score_thr`` keeps exactly those); of equal F1s, the
        highest threshold. Detections that COCO ignores (on crowd regions) count neither way.
    """
    thr_index = _iou_index(params, iou_thr)
    num_gts = int(sum(record.categories['num_gts'][:, 0].sum() for record in image_matches))
    if num_gts == 0:
        raise ValueError('the split has no ground-truth objects to choose a score threshold '
                         'against; give one')
    detections = _counted(np.concatenate([record.detections for record in image_matches]),
                          params)
    detections = detections[np.argsort(-detections['score'], kind='mergesort')]
    scores = detections['score']
    # the counts when the k best are kept, k = 0 .. n; cut only where the score drops
    true_positives, false_positives = (np.concatenate([[0], np.cumsum(flags)])
                                       for flags in _flags(detections, params, thr_index))
    drops = np.ones(len(scores) + 1, bool)
    drops[1:-1] = scores[:-1] > scores[1:]
    cuts = np.flatnonzero(drops)
    f1 = 2 * true_positives[cuts] / (true_positives[cuts] + false_positives[cuts] + num_gts)
    kept = cuts[np.argmax(f1)]
    if kept == 0:
        score_thr = float(scores[0]) if len(scores) else 0.0
    else:
        score_thr = float(scores[kept - 1] + (scores[kept] if kept < len(scores) else 0.0)) / 2
    tp, fp = int(true_positives[kept]), int(false_positives[kept])
    return ScoreThreshold(score_thr=score_thr, f1=float(f1.max()),
                          precision=tp / (tp + fp) if tp + fp else 0.0, recall=tp / num_gts,
                          num_detections=int(kept), num_gts=num_gts)


def count_matches(record, params, score_thr, iou_thr=0.5):
    """Of one image's ``ImageMatches``: (detections scoring above ``score_thr``, those of them
    that match a ground truth at ``iou_thr``)."""
    detections = _counted(record.detections, params)
    above = detections['score'] > score_thr
    true_positive, _ = _flags(detections, params, _iou_index(params, iou_thr))
    return int(above.sum()), int((true_positive & above).sum())


def _iou_index(params, iou_thr):
    index = np.flatnonzero(np.isclose(params.iouThrs, iou_thr))
    if len(index) != 1:
        raise ValueError(f'iou_thr {iou_thr} is not one of the IoU thresholds matched with: '
                         f'{list(params.iouThrs)}')
    return index[0]


def _counted(detections, params):
    """The detections AP counts: each image's ``maxDets`` best (the largest ``maxDets``)."""
    return detections[detections['rank'] < params.maxDets[-1]]


def _flags(detections, params, thr_index):
    """(true positive, false positive) per detection at IoU threshold ``thr_index``, area 'all'."""
    return tuple(unpack_flags(detections[key], len(params.areaRng), len(params.iouThrs))
                 [:, 0, thr_index] for key in ('true_positive', 'false_positive'))
