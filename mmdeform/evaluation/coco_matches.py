"""COCO box evaluation in memory that does not grow with the kept per-image records.

pycocotools' ``COCOeval.evaluate()`` keeps, until ``accumulate()``, a dict with ids, IoU matrices
and match arrays for every (image, category, area range): ~80 kB per image of the demo model.
Matching is per image, so ``match_images`` runs ``COCOeval.evaluate()`` on a chunk of images
and keeps of it only what ``accumulate()`` reads, as an ``ImageMatches`` per image: per kept
detection its category, rank in its image, score and whether it is a true or false positive at
each (area range, IoU threshold), packed to bits; per category present in the image the number
of ground truths that count at each area range. ``accumulate`` computes ``COCOeval.accumulate()``'s
precision, recall and scores from those records, to the bit.
"""
import contextlib
import io
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


# not a tuple: mmengine's evaluation would rebuild it as a plain one
@dataclass(frozen=True, slots=True)
class ImageMatches:
    img_id: int
    detections: np.ndarray  # of ``detection_dtype``, in COCOeval's order (by category, score)
    categories: np.ndarray  # of ``category_dtype``: the categories with ground truth or detections


def detection_dtype(num_area_ranges, num_iou_thrs):
    bits = ((num_area_ranges * num_iou_thrs + 7) // 8, )
    return np.dtype([('category', np.int32), ('rank', np.int32), ('score', np.float64),
                     ('true_positive', np.uint8, bits), ('false_positive', np.uint8, bits)])


def category_dtype(num_area_ranges):
    return np.dtype([('category', np.int32), ('num_gts', np.int32, (num_area_ranges, ))])


def box_evaluator(coco_gt, cat_ids, iou_thrs, max_dets, coco_dt=None):
    """A ``COCOeval`` of boxes with CocoMetric's parameters (maxDets are its proposal_nums)."""
    coco_eval = COCOeval(coco_gt, coco_dt, 'bbox')
    coco_eval.params.catIds = list(cat_ids)
    coco_eval.params.iouThrs = np.asarray(iou_thrs, dtype=float)
    coco_eval.params.maxDets = list(max_dets)
    return coco_eval


def coco_detections(img_id, bboxes, scores, labels, cat_ids):
    """COCO result dicts of one image's detections: ``bboxes`` (n, 4) xyxy, ``scores``,
    ``labels`` (indices into ``cat_ids``), as CocoMetric converts them."""
    detections = []
    for box, score, label in zip(bboxes, scores, labels):
        x1, y1, x2, y2 = box.tolist()
        detections.append(dict(image_id=img_id, bbox=[x1, y1, x2 - x1, y2 - y1],
                               score=float(score), category_id=cat_ids[label]))
    return detections


def match_images(coco_gt, detections, img_ids, cat_ids, iou_thrs, max_dets):
    """COCOeval's matching of ``detections`` (COCO result dicts: image_id, category_id, bbox
    as x, y, w, h, score) on the images ``img_ids``, as one ``ImageMatches`` per image."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_dt = coco_gt.loadRes(detections) if detections else _no_results(coco_gt)
        coco_eval = box_evaluator(coco_gt, cat_ids, iou_thrs, max_dets, coco_dt)
        coco_eval.params.imgIds = list(img_ids)
        coco_eval.evaluate()
    return [_image_matches(coco_eval, i) for i in range(len(coco_eval.params.imgIds))]


def _no_results(coco_gt):
    coco_dt = COCO()  # loadRes cannot take an empty list
    coco_dt.dataset = dict(images=coco_gt.dataset['images'], annotations=[])
    coco_dt.createIndex()
    return coco_dt


def _image_matches(coco_eval, i):
    """The compact record of image ``i`` of ``coco_eval.evalImgs`` (ordered by category, area
    range, image; None where an image has neither ground truth nor detections of a category)."""
    p = coco_eval.params
    num_images, num_areas = len(p.imgIds), len(p.areaRng)
    detections, categories = [], []
    for k in range(len(p.catIds)):
        per_area = [coco_eval.evalImgs[(k * num_areas + a) * num_images + i]
                    for a in range(num_areas)]
        if per_area[0] is None:
            continue
        category = np.zeros(1, category_dtype(num_areas))
        category['category'] = k
        category['num_gts'] = [np.count_nonzero(e['gtIgnore'] == 0) for e in per_area]
        categories.append(category)
        # accumulate() counts a detection as matched when its matched gt id is non-zero
        matched = np.concatenate([e['dtMatches'] for e in per_area]).astype(bool)
        counted = ~np.concatenate([e['dtIgnore'] for e in per_area]).astype(bool)
        scores = per_area[0]['dtScores']  # the same detections, sorted by score, in every range
        rows = np.zeros(len(scores), detection_dtype(num_areas, len(p.iouThrs)))
        rows['category'] = k
        rows['rank'] = np.arange(len(scores))
        rows['score'] = scores
        rows['true_positive'] = np.packbits(matched & counted, axis=0).T
        rows['false_positive'] = np.packbits(~matched & counted, axis=0).T
        detections.append(rows)
    num_thrs = len(p.iouThrs)
    return ImageMatches(
        p.imgIds[i],
        np.concatenate(detections) if detections else np.zeros(
            0, detection_dtype(num_areas, num_thrs)),
        np.concatenate(categories) if categories else np.zeros(0, category_dtype(num_areas)))


def accumulate(image_matches, params):
    """``COCOeval.accumulate()``'s ``eval`` dict (precision, recall, scores) from the records of
    ``match_images``, for the COCOeval ``params`` they were matched with."""
    T, R, K = len(params.iouThrs), len(params.recThrs), len(params.catIds)
    A, M = len(params.areaRng), len(params.maxDets)
    precision = -np.ones((T, R, K, A, M))  # -1 where a category has no ground truth
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    # COCOeval concatenates the images in the order of their ids
    image_matches = sorted(image_matches, key=lambda record: record.img_id)
    detections = np.concatenate([record.detections for record in image_matches])
    categories = np.concatenate([record.categories for record in image_matches])
    for k in range(K):
        num_gts = categories['num_gts'][categories['category'] == k].sum(0)
        of_k = detections[detections['category'] == k]
        true_positive = unpack_flags(of_k['true_positive'], A, T)
        false_positive = unpack_flags(of_k['false_positive'], A, T)
        for m, max_det in enumerate(params.maxDets):
            kept = np.flatnonzero(of_k['rank'] < max_det)
            # mergesort: ties keep the image order, as in COCOeval (and its Matlab original)
            by_score = kept[np.argsort(-of_k['score'][kept], kind='mergesort')]
            sorted_scores = of_k['score'][by_score]
            for a in range(A):
                if num_gts[a] == 0:
                    continue
                for t in range(T):  # one threshold at a time: a small peak of memory
                    pr, rc, ss = _precision_recall(true_positive[by_score, a, t],
                                                   false_positive[by_score, a, t], num_gts[a],
                                                   sorted_scores, params.recThrs)
                    precision[t, :, k, a, m], recall[t, k, a, m], scores[t, :, k, a, m] = pr, rc, ss
    return dict(params=params, counts=[T, R, K, A, M], precision=precision, recall=recall,
                scores=scores)


def unpack_flags(bits, num_areas, num_thrs):
    """(n, bytes) packed bits -> (n, area range, IoU threshold) bools."""
    flat = np.unpackbits(bits, axis=1, count=num_areas * num_thrs).view(bool)
    return flat.reshape(len(bits), num_areas, num_thrs)


def _precision_recall(true_positive, false_positive, num_gts, sorted_scores, rec_thrs):
    """Interpolated precision and the scores at ``rec_thrs``, and the final recall, of
    detections sorted by score (their true/false positive flags)."""
    tp = np.cumsum(true_positive).astype(float)
    fp = np.cumsum(false_positive).astype(float)
    recall = tp / num_gts
    precision = tp / (fp + tp + np.spacing(1))
    # the precision envelope: at each rank, the best precision at this recall or higher
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    ranks = np.searchsorted(recall, rec_thrs, side='left')
    reached = ranks < len(tp)  # recall thresholds higher than the recall reached stay 0
    at_thrs, scores = np.zeros(len(rec_thrs)), np.zeros(len(rec_thrs))
    at_thrs[reached] = precision[ranks[reached]]
    scores[reached] = sorted_scores[ranks[reached]]
    return at_thrs, (recall[-1] if len(tp) else 0.0), scores
