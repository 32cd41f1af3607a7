"""best_f1_threshold on hand-made detections whose best threshold is known: COCO's matching at
IoU 0.5 (duplicates and wrong classes are false positives, crowd regions count neither way), and
no cut between detections of equal score."""
import contextlib
import io

import pytest
from pycocotools.coco import COCO

from mmdeform.evaluation.coco_matches import box_evaluator, match_images
from mmdeform.evaluation.score_threshold import best_f1_threshold, count_matches

CIRCLE, SQUARE = 1, 2


def coco_gt(objects):
    """A COCO ground truth of (image id, category, xyxy box, crowd) objects on 2 images."""
    annotations = [dict(id=i + 1, image_id=img_id, category_id=category,
                        bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
                        iscrowd=int(crowd))
                   for i, (img_id, category, (x1, y1, x2, y2), crowd) in enumerate(objects)]
    coco = COCO()
    coco.dataset = dict(images=[dict(id=1, width=200, height=200), dict(id=2, width=200,
                                                                        height=200)],
                        annotations=annotations,
                        categories=[dict(id=CIRCLE, name='circle'), dict(id=SQUARE,
                                                                         name='square')])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def choose(objects, detections, iou_thr=0.5):
    """(best_f1_threshold, matches by image, params) for (image id, category, xyxy, score)
    detections."""
    coco = coco_gt(objects)
    results = [dict(image_id=img_id, category_id=category, bbox=[x1, y1, x2 - x1, y2 - y1],
                    score=score) for img_id, category, (x1, y1, x2, y2), score in detections]
    matches = match_images(coco, results, [1, 2], [CIRCLE, SQUARE], [iou_thr], [100])
    params = box_evaluator(coco, [CIRCLE, SQUARE], [iou_thr], [100]).params
    return (best_f1_threshold(matches, params, iou_thr),
            {record.img_id: record for record in matches}, params)


A, B, C = (10, 10, 50, 50), (60, 60, 100, 100), (20, 20, 70, 70)
OBJECTS = [(1, CIRCLE, A, False), (1, SQUARE, B, False), (2, CIRCLE, C, False)]


def test_best_f1_keeps_the_detections_above_the_known_best_cut():
    detections = [
        (1, CIRCLE, A, 0.9),                 # true positive
        (1, CIRCLE, (12, 10, 52, 50), 0.8),  # duplicate of A: false positive
        (2, CIRCLE, C, 0.7),                 # true positive
        (1, CIRCLE, B, 0.6),                 # wrong class on B: false positive
        (1, SQUARE, (62, 58, 100, 98), 0.5),  # B, IoU 0.86: true positive
        (2, SQUARE, (0, 0, 10, 10), 0.2),    # background: false positive
    ]
    # F1 = 2 TP / (TP + FP + 3) keeping the k best: 0.5, 0.4, 0.667, 0.571, 0.75, 0.667
    choice, matches, params = choose(OBJECTS, detections)
    assert choice.score_thr == pytest.approx(0.35)  # halfway between 0.5 (kept) and 0.2
    assert choice.f1 == pytest.approx(0.75)
    assert (choice.precision, choice.recall) == (pytest.approx(0.6), 1.0)
    assert (choice.num_detections, choice.num_gts) == (5, 3)
    # per image, as drawn: image 1 keeps 4 detections above 0.35, 2 of them match
    assert count_matches(matches[1], params, choice.score_thr) == (4, 2)
    assert count_matches(matches[2], params, choice.score_thr) == (1, 1)


def test_a_stricter_iou_changes_what_matches():
    detections = [(1, CIRCLE, A, 0.9), (1, SQUARE, (62, 58, 100, 98), 0.5)]
    choice, _, _ = choose(OBJECTS, detections, iou_thr=0.9)  # B's box has IoU 0.86
    assert (choice.f1, choice.num_detections) == (pytest.approx(0.5), 1)
    assert choice.score_thr == pytest.approx(0.7)


def test_no_cut_between_equal_scores():
    detections = [(1, CIRCLE, A, 0.9), (1, SQUARE, B, 0.8), (2, CIRCLE, (150, 150, 190, 190), 0.8),
                  (2, SQUARE, (150, 150, 190, 190), 0.8), (1, SQUARE, (0, 100, 40, 140), 0.8)]
    # Keeping 0.9 and one 0.8 would give F1 0.8, but the 0.8s go together: 2 TP, 3 FP (0.5),
    # or 0.9 alone: 1 TP (0.5); the higher threshold of equal F1s.
    choice, _, _ = choose(OBJECTS, detections)
    assert choice.f1 == pytest.approx(0.5)
    assert choice.score_thr == pytest.approx(0.85)
    assert choice.num_detections == 1


def test_detections_on_crowd_regions_count_neither_way():
    objects = [(1, CIRCLE, A, False), (1, CIRCLE, B, True)]
    choice, _, _ = choose(objects, [(1, CIRCLE, B, 0.9), (1, CIRCLE, A, 0.8)])
    assert (choice.f1, choice.precision, choice.recall) == (1.0, 1.0, 1.0)
    assert choice.score_thr == pytest.approx(0.4) and choice.num_detections == 2


def test_no_detections_and_no_ground_truth():
    choice, _, _ = choose(OBJECTS, [])
    assert (choice.f1, choice.recall, choice.num_detections) == (0.0, 0.0, 0)
    with pytest.raises(ValueError, match='no ground-truth objects'):
        choose([], [(1, CIRCLE, A, 0.9)])


def test_iou_threshold_must_have_been_matched():
    coco = coco_gt(OBJECTS)
    matches = match_images(coco, [], [1, 2], [CIRCLE, SQUARE], [0.5], [100])
    params = box_evaluator(coco, [CIRCLE, SQUARE], [0.5], [100]).params
    with pytest.raises(ValueError, match='iou_thr 0.75 is not one of'):
        best_f1_threshold(matches, params, iou_thr=0.75)
