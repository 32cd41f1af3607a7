"""The embedded shapes dataset: deterministic, annotations true to the pixels, readable by
mmdet's CocoDataset through the base dataset config."""
import filecmp
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmdeform.datasets.shapes import SHAPE_CLASSES, _shape_mask, draw_image, generate_split
from mmdeform.registry import DATASETS
from mmdeform.utils import register_all_modules

ROOT = osp.dirname(osp.dirname(osp.dirname(__file__)))


@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    generate_split(str(out), 'val', 40, seed=3, show_progress=False)
    return out


def load_json(path):
    with open(path) as f:
        return json.load(f)


def test_same_seed_same_dataset_other_seed_other_dataset(shapes_dir, tmp_path):
    generate_split(str(tmp_path / 'same'), 'val', 40, seed=3, show_progress=False)
    generate_split(str(tmp_path / 'other'), 'val', 40, seed=4, show_progress=False)
    ann = 'annotations/instances_val.json'
    assert load_json(shapes_dir / ann) == load_json(tmp_path / 'same' / ann)
    assert load_json(shapes_dir / ann) != load_json(tmp_path / 'other' / ann)
    assert filecmp.cmp(shapes_dir / 'val/000007.png', tmp_path / 'same/val/000007.png',
                       shallow=False)


@pytest.mark.parametrize('label, area', [
    (SHAPE_CLASSES.index('circle'), np.pi / 4),
    (SHAPE_CLASSES.index('square'), 1 / 2),  # circumradius r: side r * sqrt(2)
    (SHAPE_CLASSES.index('triangle'), 3 * np.sqrt(3) / 16),  # (3 sqrt(3) / 4) r^2, r = 1/2
])
def test_shape_area_is_the_geometric_one(label, area):
    size = 60
    rng = np.random.default_rng(0)
    mask = _shape_mask(rng, label, 400, 400, size)
    # centre anywhere in the image: only compare shapes that lie fully inside it
    while mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        mask = _shape_mask(rng, label, 400, 400, size)
    assert mask.sum() == pytest.approx(area * size**2, rel=0.08)


def test_visible_parts_are_disjoint_and_one_colour_each():
    rng = np.random.default_rng(1)
    for _ in range(20):
        image, objects = draw_image(rng, 120, 100, max_objects=8, empty_prob=0)
        covered = np.zeros((100, 120), dtype=int)
        for obj in objects:
            covered += obj['mask']
            colours = np.unique(image[obj['mask']], axis=0)
            assert len(colours) == 1, 'a visible part shows another object or the background'
        assert covered.max() <= 1


def test_annotations_match_images(shapes_dir):
    data = load_json(shapes_dir / 'annotations/instances_val.json')
    assert [c['name'] for c in data['categories']] == list(SHAPE_CLASSES)
    sizes = {im['id']: (im['width'], im['height']) for im in data['images']}
    for im in data['images'][:5]:
        with Image.open(shapes_dir / 'val' / im['file_name']) as f:
            assert f.size == (im['width'], im['height']) and f.mode == 'RGB'
    for ann in data['annotations']:
        x, y, w, h = ann['bbox']
        width, height = sizes[ann['image_id']]
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        assert 0 < ann['area'] <= w * h
    annotated = {ann['image_id'] for ann in data['annotations']}
    assert len(annotated) < len(data['images']), 'some images have no objects'
    assert min(ann['area'] for ann in data['annotations']) < 32**2, 'small objects'


def test_coco_dataset_reads_it_through_the_base_config(shapes_dir):
    register_all_modules()
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/shapes_detection.py'))
    dataset_cfg = cfg.val_dataloader.dataset
    dataset_cfg.data_root = str(shapes_dir)
    dataset = DATASETS.build(dataset_cfg)
    data = load_json(shapes_dir / 'annotations/instances_val.json')
    assert len(dataset) == len(data['images'])
    assert dataset.metainfo['classes'] == SHAPE_CLASSES
    sample = dataset[0]
    first = [a for a in data['annotations'] if a['image_id'] == data['images'][0]['id']]
    assert len(sample['data_samples'].gt_instances) == len(first)


@pytest.mark.parametrize('kwargs, message', [
    (dict(split='test'), 'split must be one of'),
    (dict(num_images=0), 'num_images must be at least 1'),
    (dict(size_range=(300, 200)), 'size_range'),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    args = dict(out_dir=str(tmp_path), split='val', num_images=2, show_progress=False)
    with pytest.raises(ValueError, match=message):
        generate_split(**{**args, **kwargs})
