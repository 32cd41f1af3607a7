"""StreamingCocoMetric against pycocotools' COCOeval and mmdet's CocoMetric on the same
detections: the same numbers, to the bit, from chunks of images in any order."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoMetric
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdeform.evaluation import StreamingCocoMetric
from mmdeform.evaluation.coco_matches import accumulate, box_evaluator, match_images
from mmdeform.registry import METRICS

CLASSES = ('a', 'b', 'c')
CAT_IDS = [3, 7, 9]  # not 1..K: labels must be mapped to category ids


def random_box(rng, width, height):
    # sizes across COCO's small (< 32^2), medium and large area ranges
    w, h = rng.choice([6, 20, 45, 120], 2) * rng.uniform(0.7, 1.3, 2)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return [float(x), float(y), float(w), float(h)]


def write_dataset(path, rng, num_images=23):
    """Ground truth with crowds, images without objects, all area ranges; detections: jittered
    ground truth (some with the wrong class), false positives, tied scores."""
    images, annotations, detections = [], [], []
    for img_id in range(1, num_images + 1):
        width, height = (int(v) for v in rng.integers(150, 400, 2))
        images.append(dict(id=img_id, file_name=f'{img_id}.png', width=width, height=height))
        for _ in range(rng.integers(0, 7)):
            box = random_box(rng, width, height)
            category = int(rng.choice(CAT_IDS))
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id, category_id=category,
                                    bbox=box, area=box[2] * box[3],
                                    iscrowd=int(rng.random() < 0.1)))
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.1 * min(box[2:]), 4)
                detections.append((img_id, np.array(box[:2]) + jitter[:2],
                                   np.array(box[2:]) + jitter[2:],
                                   category if rng.random() < 0.8 else int(rng.choice(CAT_IDS))))
        for _ in range(rng.integers(0, 15)):
            box = random_box(rng, width, height)
            detections.append((img_id, np.array(box[:2]), np.array(box[2:]),
                               int(rng.choice(CAT_IDS))))
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=[dict(id=c, name=n) for c, n in zip(CAT_IDS, CLASSES)]), f)
    results = []
    for img_id, corner, size, category in detections:
        size = np.maximum(size, 1.0)
        results.append(dict(image_id=img_id, category_id=category,
                            bbox=[float(v) for v in (*corner, *size)],
                            score=float(np.round(rng.random(), 1))))  # ties across images
    return results


@pytest.fixture
def dataset(tmp_path):
    path = str(tmp_path / 'instances.json')
    detections = write_dataset(path, np.random.default_rng(0))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(path)
    return path, coco, detections


@pytest.mark.parametrize('max_dets', [(100, 300, 1000), (1, 3, 10)])
def test_accumulate_equals_cocoeval_to_the_bit(dataset, max_dets):
    path, coco, detections = dataset
    iou_thrs = np.linspace(0.5, 0.95, 10)
    reference = box_evaluator(coco, CAT_IDS, iou_thrs, max_dets, coco.loadRes(detections))
    with contextlib.redirect_stdout(io.StringIO()):
        reference.evaluate()
        reference.accumulate()
    assert (reference.eval['precision'] > 0).any()  # the data makes a real test

    img_ids = coco.getImgIds()[::-1]  # chunks out of order, one without detections
    chunks = [img_ids[i:i + 5] for i in range(0, len(img_ids), 5)] + [[]]
    records = []
    for chunk in chunks:
        records += match_images(coco, [d for d in detections if d['image_id'] in chunk], chunk,
                                CAT_IDS, iou_thrs, max_dets)
    ours = accumulate(records, reference.params)
    for key in ('precision', 'recall', 'scores'):
        np.testing.assert_array_equal(ours[key], reference.eval[key], err_msg=key)


def samples_of(detections, coco, img_ids):
    """What the model hands the metric, per image (labels index CLASSES)."""
    samples = []
    for img_id in img_ids:
        mine = [d for d in detections if d['image_id'] == img_id]
        boxes = torch.tensor([d['bbox'] for d in mine], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        image = coco.imgs[img_id]
        samples.append(dict(
            img_id=img_id, ori_shape=(image['height'], image['width']),
            pred_instances=dict(
                bboxes=boxes, scores=torch.tensor([d['score'] for d in mine]),
                labels=torch.tensor([CAT_IDS.index(d['category_id']) for d in mine],
                                    dtype=torch.long))))
    return samples


def run_metric(metric, samples, batch_size=2):
    metric.dataset_meta = dict(classes=CLASSES)
    for i in range(0, len(samples), batch_size):
        metric.process({}, samples[i:i + batch_size])
    return metric.evaluate(len(samples))


@pytest.mark.parametrize('skip_images', [False, True])
def test_metric_equals_mmdet_coco_metric(dataset, skip_images):
    path, coco, detections = dataset
    img_ids = coco.getImgIds()
    if skip_images:  # images without results still count: their objects are missed
        img_ids = img_ids[3:-2]
    samples = samples_of(detections, coco, img_ids)
    expected = run_metric(CocoMetric(ann_file=path, classwise=True), samples)
    streaming = StreamingCocoMetric(ann_file=path, classwise=True, chunk_size=3)
    ours = run_metric(streaming, samples)
    assert ours == expected and expected['coco/bbox_mAP'] > 0
    assert not streaming._pending and not streaming.results  # nothing left for the next epoch
    # and again, as the next validation of a training run
    assert run_metric(streaming, samples) == expected


def test_built_from_config_and_records_are_compact(dataset):
    path, coco, detections = dataset
    metric = METRICS.build(dict(type='StreamingCocoMetric', ann_file=path, chunk_size=4))
    metric.dataset_meta = dict(classes=CLASSES)
    samples = samples_of(detections, coco, coco.getImgIds())
    metric.process({}, samples[:5])
    assert len(metric.results) == 5 and len(metric._pending) == 0  # a chunk is matched at 4
    num_dets = sum(len(s['pred_instances']['scores']) for s in samples[:5])
    held = sum(r.detections.nbytes + r.categories.nbytes for r in metric.results)
    assert held <= 26 * num_dets + 4 * 5 * len(CAT_IDS) * 5  # bytes: per detection, per class


@pytest.mark.parametrize('kwargs, message', [
    (dict(ann_file=None), 'needs ann_file'),
    (dict(metric='segm'), 'metric="bbox" only'),
    (dict(format_only=True, outfile_prefix='x'), 'writes no result files'),
    (dict(chunk_size=0), 'chunk_size must be a positive integer'),
    (dict(metric_items=['mAP', 'AR@100']), r"metric_items \['AR@100'\]: StreamingCocoMetric has"),
])
def test_unsupported_arguments_are_named(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamingCocoMetric(**{'ann_file': dataset[0], **kwargs})


def test_prediction_of_an_unknown_image_is_named(dataset):
    path, coco, detections = dataset
    metric = StreamingCocoMetric(ann_file=path)
    metric.dataset_meta = dict(classes=CLASSES)
    sample = samples_of(detections, coco, [1])[0]
    sample['img_id'] = 999
    with pytest.raises(ValueError, match='image id 999 of a prediction is not an image of the '
                       'annotation file'):
        metric.process({}, [sample])
