"""Bad COCO-format data: each problem is repaired with a count in the log, skipped with a
warning, or rejected up front naming the file and the record; a tiny Deformable DETR trains and
is evaluated on a dataset with every repairable problem at once."""
import contextlib
import inspect
import json
import logging
import math
import os.path as osp
import uuid

import mmcv.transforms
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from PIL import Image

from mmdeform.datasets import checked_coco
from mmdeform.datasets.checked_coco import CheckedCocoDataset
from mmdeform.utils import register_all_modules

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE_DATASET_CFG = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/coco_detection.py'))
# The base config's loading transforms, so that the tests check what every config uses.
TRAIN_LOADING = BASE_DATASET_CFG.train_pipeline[:2]
TEST_LOADING = [BASE_DATASET_CFG.test_pipeline[0], BASE_DATASET_CFG.test_pipeline[2]]
W, H = 32, 24
CLASSES = ('a', 'b')


def write_image(path, mode='RGB', size=(W, H), fmt='PNG', seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), np.uint8)
    Image.fromarray(pixels, 'RGBA').convert(mode).save(path, fmt)


def annotation(ann_id, image_id, bbox, category_id=1):
    return dict(id=ann_id, image_id=image_id, category_id=category_id, bbox=bbox,
                area=bbox[2] * bbox[3], iscrowd=0)


def coco(annotations, num_images=2):
    """A COCO dict: ``num_images`` W x H images ``{id}.png``, categories a (1) and b (2)."""
    return dict(
        images=[dict(id=i, file_name=f'{i}.png', width=W, height=H)
                for i in range(1, num_images + 1)],
        annotations=annotations,
        categories=[dict(id=1, name='a'), dict(id=2, name='b')])


# The second box is inside the image, with x + w - x != w in floating point.
GOOD = [annotation(1, 1, [2, 3, 10, 8]),
        annotation(2, 2, [1.34, 8.47, 7.64, 2.55], category_id=2)]


def write_dataset(root, content, write_images=True):
    """``content`` (a COCO dict, text or bytes) as root/ann.json, and the images of a COCO dict
    under root/img/."""
    (root / 'img').mkdir(exist_ok=True)
    data = json.dumps(content, indent=1) if isinstance(content, dict) else content
    (root / 'ann.json').write_bytes(data.encode() if isinstance(data, str) else data)
    if write_images and isinstance(content, dict):
        for image in content['images']:
            write_image(root / 'img' / image['file_name'], seed=image['id'])
    return str(root / 'ann.json')


def build(root, test_mode=False, classes=CLASSES, **kwargs):
    register_all_modules()
    return CheckedCocoDataset(
        data_root=str(root), ann_file='ann.json', data_prefix=dict(img='img/'),
        metainfo=dict(classes=classes), test_mode=test_mode,
        pipeline=TEST_LOADING if test_mode else TRAIN_LOADING,
        serialize_data=False,  # its gc.collect() takes most of a second
        **kwargs)


@contextlib.contextmanager
def messages_of(logger):
    """The list of the messages ``logger`` emits in the context."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def log_messages():
    """The messages mmengine's current logger emits during the test."""
    with messages_of(MMLogger.get_current_instance()) as messages:
        yield messages


# (bbox of annotation 3 in image 1, what happens, its xyxy box after parsing or None if dropped)
BOX_CASES = {
    'partly outside': ([-4, 20, 10, 8], checked_coco.CLIPPED, [0, 20, 6, 24]),
    'wholly outside': ([40, 2, 5, 5], checked_coco.OUTSIDE, None),
    'zero width': ([2, 2, 0, 5], checked_coco.DEGENERATE, None),
    'negative height': ([2, 9, 5, -3], checked_coco.DEGENERATE, None),
    'nan': ([2, math.nan, 5, 5], checked_coco.NON_FINITE, None),
    'infinite': ([2, 2, math.inf, 5], checked_coco.NON_FINITE, None),
    'sub-pixel inside the image': ([31.5, 2, 5, 5], checked_coco.SUB_PIXEL, None),
}


@pytest.mark.parametrize('bbox, reason, parsed', BOX_CASES.values(), ids=BOX_CASES.keys())
def test_bad_box_is_repaired_or_dropped(tmp_path, log_messages, bbox, reason, parsed):
    write_dataset(tmp_path, coco(GOOD + [annotation(3, 1, bbox)]))
    dataset = build(tmp_path)
    assert dataset.annotation_repairs == {reason: 1}
    boxes = [instance['bbox'] for instance in dataset.get_data_info(0)['instances']]
    assert boxes == [[2, 3, 12, 11]] + ([parsed] if parsed else [])
    assert any(reason in m and 'annotation id 3' in m and "'1.png'" in m for m in log_messages)


@pytest.mark.parametrize('classes, category_id, reason', [
    (CLASSES, 7, checked_coco.UNKNOWN_CATEGORY),
    (('a', ), 2, checked_coco.OTHER_CLASS),
], ids=['not in categories', 'not a class'])
def test_annotation_of_other_category_is_dropped(tmp_path, log_messages, classes, category_id,
                                                 reason):
    write_dataset(tmp_path, coco(GOOD[:1] + [annotation(3, 1, [1, 1, 5, 5], category_id)]))
    dataset = build(tmp_path, classes=classes)
    assert dataset.annotation_repairs == {reason: 1}
    assert [i['bbox_label'] for i in dataset.get_data_info(0)['instances']] == [0]
    assert any(reason in m and 'annotation id 3' in m for m in log_messages)


@pytest.mark.parametrize('filter_empty_gt, kept', [(False, 3), (True, 2)])
def test_images_without_annotations(tmp_path, log_messages, filter_empty_gt, kept):
    write_dataset(tmp_path, coco(GOOD, num_images=3))
    dataset = build(tmp_path, filter_cfg=dict(filter_empty_gt=filter_empty_gt))
    assert len(dataset) == kept and not dataset.annotation_repairs
    assert dataset.get_data_info(1)['instances'][0]['bbox'] == [1.34, 8.47, 1.34 + 7.64,
                                                                8.47 + 2.55]
    assert any('1 of 3 images have no usable annotation' in m and '3.png' in m
               for m in log_messages)


@pytest.mark.parametrize('mode, expected', [
    ('L', lambda rgba: np.repeat(np.asarray(Image.fromarray(rgba).convert('L'))[..., None], 3,
                                 -1)),
    ('RGBA', lambda rgba: rgba[..., 2::-1]),  # BGR, alpha dropped
], ids=['grayscale', 'rgba'])
def test_grayscale_and_rgba_load_as_3_channels(tmp_path, mode, expected):
    write_dataset(tmp_path, coco(GOOD))
    rgba = np.random.default_rng(5).integers(0, 256, (H, W, 4), np.uint8)
    Image.fromarray(rgba).convert(mode).save(tmp_path / 'img' / '1.png')
    img = build(tmp_path)[0]['img']
    assert img.shape == (H, W, 3)
    np.testing.assert_array_equal(img, expected(rgba))


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


UNREADABLE = {
    'missing': lambda path: path.unlink(),
    'empty': lambda path: path.write_bytes(b''),
    'not an image': lambda path: path.write_text('hello'),
    'truncated png': truncated,
    'truncated jpeg': lambda path: (write_image(path, fmt='JPEG'), truncated(path)),
}


@pytest.mark.parametrize('damage', UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_image_is_skipped_in_training(tmp_path, log_messages, damage):
    write_dataset(tmp_path, coco(GOOD))
    damage(tmp_path / 'img' / '1.png')
    dataset = build(tmp_path)
    assert dataset[0]['img_path'].endswith('2.png')  # another sample instead
    assert any('skipped unreadable image' in m and 'img/1.png' in m
               and '1 unreadable image(s) skipped so far' in m for m in log_messages)


@pytest.mark.parametrize('damage', list(UNREADABLE.values())[1:], ids=list(UNREADABLE)[1:])
def test_unreadable_image_fails_evaluation_naming_it(tmp_path, damage):
    write_dataset(tmp_path, coco(GOOD))
    damage(tmp_path / 'img' / '1.png')
    with pytest.raises(Exception) as mmcv_error:  # the exception of mmcv's loader
        mmcv.transforms.LoadImageFromFile()(dict(img_path=str(tmp_path / 'img' / '1.png')))
    with pytest.raises(mmcv_error.type, match=r'cannot read image .*img/1\.png') as error:
        build(tmp_path, test_mode=True)[0]
    assert str(error.value) == str(mmcv_error.value)


def test_missing_image_fails_evaluation_up_front(tmp_path):
    write_dataset(tmp_path, coco(GOOD, num_images=3))
    (tmp_path / 'img' / '2.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'ann\.json: 1 of its 3 images do not exist, '
                                                r"e\.g\. \['.*img/2\.png'\]"):
        build(tmp_path, test_mode=True)


def with_changes(change):
    content = coco([dict(ann) for ann in GOOD])
    change(content)
    return content


REJECTED = {
    'syntax error': ('{\n "images": [\n  {"id": 1,}\n ]\n}',
                     r'is not valid JSON: Expecting property name enclosed in double quotes at '
                     r'line 3, column 12'),
    'not text': (b'\xff\xd8\xff\xe0 a JPEG?', 'is not JSON text: .* codec'),
    'not an object': ('[]', 'holds a JSON object .* not a JSON list'),
    'no images': (with_changes(lambda c: c.pop('images')), "has no 'images' list"),
    'no categories': (with_changes(lambda c: c.pop('categories')), "has no 'categories' list"),
    'images not a list': (with_changes(lambda c: c.update(images={})),
                          "'images' must be a list, got a dict"),
    'image without file_name': (with_changes(lambda c: c['images'][1].pop('file_name')),
                                r"images\[1\] \(id 2\) has no \['file_name'\]"),
    'image of zero width': (with_changes(lambda c: c['images'][0].update(width=0)),
                            r'images\[0\] \(id 1\) has width, height = \(0, 24\)'),
    'annotation without bbox': (with_changes(lambda c: c['annotations'][1].pop('bbox')),
                                r"annotations\[1\] \(id 2\) has no \['bbox'\]"),
    'bbox of 3 numbers': (with_changes(lambda c: c['annotations'][0].update(bbox=[1, 2, 3])),
                          r'annotations\[0\] \(id 1\) has bbox \[1, 2, 3\]; it must be 4'),
    'missing image id': (with_changes(lambda c: c['annotations'][1].update(image_id=7)),
                         r'annotations\[1\] \(id 2\) refers to image id 7, which is not in '),
    'duplicate annotation id': (with_changes(lambda c: c['annotations'][1].update(id=1)),
                                r'annotations\[1\] \(id 1\) repeats the id'),
    'list as id': (with_changes(lambda c: c['categories'][0].update(id=[1])),
                   r'categories\[0\] \(id \[1\]\) has id \[1\]; ids must be integers'),
    'no annotations': (with_changes(lambda c: c.pop('annotations')),
                       'has no annotations to train on'),
    'no usable annotation': (with_changes(lambda c: c['annotations'][0].update(bbox=[0, 0, 0, 0])
                                          or c['annotations'].pop(1)),
                             'none of its annotations is usable for training'),
    'class not a category': (with_changes(lambda c: c['categories'][1].update(name='c')),
                             r"1 of the 2 classes of the dataset are not category names in the "
                             r"file: \['b'\]. Its categories are \['a', 'c'\]"),
}


@pytest.mark.parametrize('content, message', REJECTED.values(), ids=REJECTED.keys())
def test_unrepairable_file_is_rejected_naming_the_record(tmp_path, content, message):
    path = write_dataset(tmp_path, content, write_images=False)
    with pytest.raises(ValueError, match=message) as error:
        build(tmp_path)
    assert str(error.value).startswith(path)


def test_area_and_iscrowd_are_needed_for_evaluation_only(tmp_path):
    # COCOeval reads both; mmdet's parser would drop (or fail on) a box without a positive area.
    write_dataset(tmp_path, with_changes(lambda c: (c['annotations'][1].pop('iscrowd'),
                                                    c['annotations'][0].update(area=0))))
    dataset = build(tmp_path)
    assert [len(dataset.get_data_info(i)['instances']) for i in range(2)] == [1, 1]
    with pytest.raises(ValueError, match=r"annotations\[1\] \(id 2\) has no \['iscrowd'\]"):
        build(tmp_path, test_mode=True)
    # the test set of COCO (image_info_test-dev2017.json) has no annotations at all
    write_dataset(tmp_path, with_changes(lambda c: c.pop('annotations')))
    assert len(build(tmp_path, test_mode=True)) == 2


# Every repairable problem at once: clipped, degenerate, outside, sub-pixel and NaN boxes,
# unknown categories, grayscale and RGBA images, images without annotations; training also has
# a missing and a corrupted image.
ALL_PROBLEMS = [
    annotation(1, 1, [2, 3, 10, 8]),
    annotation(2, 1, [-5, 10, 12, 20], category_id=2),
    annotation(3, 2, [5, 5, 6, 6], category_id=2),
    annotation(4, 2, [20, 4, 0, 6]),
    annotation(5, 3, [30, 20, 9, 9]),
    annotation(6, 3, [40, 40, 5, 5]),
    annotation(7, 4, [3, 3, 8, 9], category_id=9),
    annotation(8, 4, [8, 2, 12, 10]),
    annotation(9, 5, [2, 2, 5, math.nan]),
    annotation(10, 5, [10, 10, 0.5, 6]),
    annotation(11, 6, [1, 1, 20, 15], category_id=2),
]


SMALL_RESIZE = dict(type='Resize', scale=(W, H), keep_ratio=True)


def tiny_detector_cfg(root, num_classes):
    """The tests' tiny Deformable DETR (1 + 1 layers, 32 channels), trained one epoch on
    root/train.json and evaluated with CocoMetric on root/val.json."""
    cfg = Config.fromfile(osp.join(ROOT, 'tests/test_apis/tiny_deformable_detr.py'))
    cfg.model.bbox_head.num_classes = num_classes
    cfg.train_dataloader = dataloader(
        root, 'train.json', TRAIN_LOADING + [SMALL_RESIZE, dict(type='PackDetInputs')],
        shuffle=True, batch_size=4)
    cfg.val_dataloader = dataloader(
        root, 'val.json', [dict(t, scale=SMALL_RESIZE['scale']) if t['type'] == 'Resize' else t
                           for t in BASE_DATASET_CFG.test_pipeline], test_mode=True)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = cfg.test_evaluator = dict(type='CocoMetric', metric='bbox',
                                                  ann_file=str(root / 'val.json'))
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(root / 'work_dir')
    cfg.experiment_name = uuid.uuid4().hex
    return cfg


def tiny_runner(root, num_classes):
    # The Runner's arguments rather than Runner.from_cfg: formatting the whole config for the
    # log and the work dir takes seconds.
    cfg = tiny_detector_cfg(root, num_classes)
    arguments = inspect.signature(Runner).parameters
    return Runner(**{key: value for key, value in cfg.items() if key in arguments})


def dataloader(root, ann_file, pipeline, test_mode=False, shuffle=False, batch_size=1):
    return dict(
        batch_size=batch_size, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        dataset=dict(type=BASE_DATASET_CFG.dataset_type, data_root=str(root), ann_file=ann_file,
                     data_prefix=dict(img='img/'), metainfo=dict(classes=CLASSES),
                     test_mode=test_mode, pipeline=pipeline, serialize_data=False,
                     filter_cfg=dict(filter_empty_gt=False, min_size=0)))


def write_all_problems(root):
    """root/train.json with images 1..8 of which 7 is missing and 8 not an image, and
    root/val.json with the readable images 1..6 (an unreadable image fails an evaluation)."""
    write_dataset(root, coco(ALL_PROBLEMS, num_images=8))
    (root / 'ann.json').rename(root / 'train.json')
    (root / 'val.json').write_text(json.dumps(coco(ALL_PROBLEMS, num_images=6)))
    write_image(root / 'img' / '1.png', mode='L')
    write_image(root / 'img' / '2.png', mode='RGBA')
    (root / 'img' / '7.png').unlink()
    (root / 'img' / '8.png').write_text('not an image')


def test_tiny_detector_trains_and_evaluates_on_bad_data(tmp_path):
    register_all_modules()
    write_all_problems(tmp_path)
    runner = tiny_runner(tmp_path, num_classes=len(CLASSES))
    with messages_of(runner.logger) as messages:
        runner.train()
        metrics = runner.val()
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    # one epoch over the 8 images draws each once: both unreadable ones are skipped
    for name in ('7.png', '8.png'):
        assert any('skipped unreadable image' in m and name in m for m in messages)
    assert any('CocoMetric reads this file itself' in m and 'val.json' in m for m in messages)
    assert runner.train_dataloader.dataset.annotation_repairs == {
        checked_coco.CLIPPED: 2, checked_coco.DEGENERATE: 1, checked_coco.OUTSIDE: 1,
        checked_coco.UNKNOWN_CATEGORY: 1, checked_coco.NON_FINITE: 1, checked_coco.SUB_PIXEL: 1}


@pytest.mark.parametrize('run', ['train', 'val', 'test'])
def test_num_classes_must_match_the_dataset(tmp_path, run):
    # More classes in the model than in the dataset would crash CocoMetric at the end of the
    # first evaluation; ClassNumberCheckHook (from the base dataset config) stops it up front.
    register_all_modules()
    write_all_problems(tmp_path)
    runner = tiny_runner(tmp_path, num_classes=3)
    with pytest.raises(ValueError, match=r'num_classes is 3, but the CheckedCocoDataset has 2 '):
        getattr(runner, run)()
