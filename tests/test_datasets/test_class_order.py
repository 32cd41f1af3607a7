"""Classes map to the file's categories by name, in whatever order they are given: the labels
trained on, the names drawn and the categories evaluated all agree. The file lists redbox (id 3)
before bluedisc (id 7); the classes are given as ('bluedisc', 'redbox')."""
import json

import pytest
import torch
from mmdet.datasets.api_wrappers import COCO
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from PIL import Image
from tools_loader import load_tool

from mmdeform.datasets.checked_coco import CheckedCocoDataset, category_ids
from mmdeform.evaluation import CocoMetric, StreamingCocoMetric
from mmdeform.utils import register_all_modules

CATEGORIES = [dict(id=3, name='redbox'), dict(id=7, name='bluedisc')]  # the file's order
CLASSES = ('bluedisc', 'redbox')
W, H = 64, 48
# per image: (category id, [x, y, w, h]); the boxes of the two categories do not overlap
BOXES = {1: [(3, [2, 3, 20, 16]), (7, [30, 20, 24, 20])],
         2: [(7, [4, 4, 16, 30])],
         3: [(3, [40, 10, 18, 18])]}
LOADING = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
           dict(type='PackDetInputs')]


@pytest.fixture
def data_root(tmp_path):
    (tmp_path / 'img').mkdir()
    images, annotations = [], []
    for image_id, boxes in BOXES.items():
        images.append(dict(id=image_id, file_name=f'{image_id}.png', width=W, height=H))
        Image.new('RGB', (W, H)).save(tmp_path / 'img' / f'{image_id}.png')
        for cat_id, bbox in boxes:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=cat_id, bbox=bbox, area=bbox[2] * bbox[3],
                                    iscrowd=0))
    (tmp_path / 'ann.json').write_text(json.dumps(
        dict(images=images, annotations=annotations, categories=CATEGORIES)))
    return tmp_path


def build(root, **kwargs):
    register_all_modules()
    return CheckedCocoDataset(data_root=str(root), ann_file='ann.json',
                              data_prefix=dict(img='img/'), pipeline=LOADING,
                              serialize_data=False, **kwargs)


def names_of_categories(image_id):
    """The category names of an image's boxes, by box."""
    names = {category['id']: category['name'] for category in CATEGORIES}
    return {tuple(float(v) for v in (x, y, x + w, y + h)): names[cat_id]
            for cat_id, (x, y, w, h) in BOXES[image_id]}


def test_labels_trained_on_name_the_annotated_category(data_root):
    dataset = build(data_root, metainfo=dict(classes=CLASSES))
    assert dataset.cat_ids == [7, 3]
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']  # what the model is trained on
        expected = names_of_categories(sample.img_id)
        gt = sample.gt_instances
        got = {tuple(box.tolist()): dataset.metainfo['classes'][label]
               for box, label in zip(gt.bboxes.tensor, gt.labels)}
        assert got == expected


def test_error_lists_the_categories_in_the_files_order(data_root):
    # without metainfo the classes are COCO's 80
    with pytest.raises(ValueError, match=r"Its categories are \['redbox', 'bluedisc'\] \(in the "
                                         r"file's order\)"):
        build(data_root)


def test_class_named_by_two_categories_is_refused(data_root):
    content = json.loads((data_root / 'ann.json').read_text())
    content['categories'].append(dict(id=9, name='redbox'))
    (data_root / 'ann.json').write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"several categories .* \{'redbox': \[3, 9\]\}"):
        build(data_root, metainfo=dict(classes=CLASSES))


def perfect_predictions(dataset):
    """Each image's ground truth as detections of score 1, labelled as the dataset labels."""
    samples = []
    for index in range(len(dataset)):
        gt = dataset[index]['data_samples'].gt_instances
        sample = DetDataSample(metainfo=dict(img_id=dataset[index]['data_samples'].img_id,
                                             ori_shape=(H, W)))
        sample.pred_instances = InstanceData(bboxes=gt.bboxes.tensor, labels=gt.labels,
                                             scores=torch.ones(len(gt)))
        samples.append(sample.to_dict())
    return samples


@pytest.mark.parametrize('metric_type', [CocoMetric, StreamingCocoMetric])
def test_evaluation_gives_each_label_the_category_of_its_name(data_root, metric_type):
    dataset = build(data_root, metainfo=dict(classes=CLASSES), test_mode=True)
    metric = metric_type(ann_file=str(data_root / 'ann.json'), classwise=True)
    metric.dataset_meta = dataset.metainfo
    metric.process({}, perfect_predictions(dataset))
    results = metric.evaluate(size=len(dataset))
    assert metric.cat_ids == [7, 3]
    # with the labels evaluated as each other's category, every detection would be a miss
    assert results['coco/bbox_mAP'] == 1.0
    assert results['coco/bluedisc_precision'] == results['coco/redbox_precision'] == 1.0


def test_drawn_ground_truth_is_labelled_by_name(data_root):
    draw_detections = load_tool('analysis_tools/draw_detections.py')
    coco = COCO(str(data_root / 'ann.json'))
    cat_ids = category_ids(coco.dataset['categories'], CLASSES, 'ann.json')
    for image_id in BOXES:
        gt = draw_detections.ground_truth(coco, image_id, cat_ids)
        assert {tuple(box.tolist()): CLASSES[label] for box, label in
                zip(gt.bboxes, gt.labels)} == names_of_categories(image_id)
