"""tools/image_demo.py over an image, a folder, a glob and a video: one drawing per image, and
predictions.json holds what inference_detector gives each image alone, in COCO's format with
the category ids of the annotation file, matched by class name."""
import json
import os
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
import torch
from tools_loader import load_tool

from mmdeform.apis import category_ids, inference_detector, init_detector
from mmdeform.utils import save_checkpoint_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(ROOT, 'tests', 'test_apis', 'tiny_deformable_detr.py')
CLASSES = ('cat', 'dog', 'bird')
# not in label order: the ids follow the names
CATEGORIES = [dict(id=9, name='bird'), dict(id=2, name='cat'), dict(id=5, name='dog')]


def write_config(path, ann_file):
    with open(path, 'w') as f:
        f.write(f'_base_ = {TINY_CONFIG!r}\n'
                'model = dict(bbox_head=dict(num_classes=3))\n'
                f'test_dataloader = dict(dataset=dict(data_root="", ann_file={ann_file!r}, '
                f'metainfo=dict(classes={CLASSES!r})))\n')


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    """A 3-class tiny model's config (its test annotation file lists CATEGORIES), a config whose
    annotation file is not there, and a checkpoint of the model."""
    root = tmp_path_factory.mktemp('model')
    ann_file = str(root / 'test.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=[], annotations=[], categories=CATEGORIES), f)
    config, config_without_file = str(root / 'config.py'), str(root / 'no_ann_file.py')
    write_config(config, ann_file)
    write_config(config_without_file, str(root / 'nowhere.json'))
    torch.manual_seed(0)
    checkpoint = str(root / 'tiny.pth')
    save_checkpoint_file(dict(state_dict=init_detector(config).state_dict()), checkpoint)
    return config, config_without_file, checkpoint


@pytest.fixture(scope='module')
def model(model_files):
    return init_detector(model_files[0], model_files[2])


@pytest.fixture
def folder(tmp_path):
    """Three images, two of one size, one of them in a sub-folder, and a text file."""
    folder = tmp_path / 'images'
    os.makedirs(folder / 'sub')
    rng = np.random.RandomState(0)
    for name, shape in (('b.png', (60, 80, 3)), ('a.jpg', (50, 90, 3)),
                        ('sub/c.png', (60, 80, 3))):
        mmcv.imwrite(rng.randint(0, 256, shape, dtype=np.uint8), str(folder / name))
    (folder / 'notes.txt').write_text('not an image')
    return str(folder)


def run_demo(model_files, source, out_dir, *options, config=None):
    load_tool('image_demo.py').main([source, config or model_files[0], model_files[2],
                                     '--out-dir', str(out_dir), *options])
    with open(osp.join(out_dir, 'predictions.json')) as f:
        predictions = json.load(f)
    with open(osp.join(out_dir, 'images.json')) as f:
        images = json.load(f)
    return predictions, images


def expected_predictions(model, image_id, image):
    """The COCO results of ``image`` run alone, computed here from inference_detector."""
    instances = inference_detector(model, image).pred_instances
    ids = [2, 5, 9]  # CATEGORIES' ids of CLASSES
    return [dict(image_id=image_id, category_id=ids[label], category_name=CLASSES[label],
                 bbox=[x1, y1, x2 - x1, y2 - y1], score=score)
            for (x1, y1, x2, y2), score, label in zip(instances.bboxes.tolist(),
                                                      instances.scores.tolist(),
                                                      instances.labels.tolist())]


def assert_same_predictions(got, expected):
    assert len(got) == len(expected)
    for one, other in zip(got, expected):
        assert one.keys() == other.keys()
        for key in ('image_id', 'category_id', 'category_name'):
            assert one[key] == other[key]
        np.testing.assert_allclose(one['bbox'], other['bbox'], rtol=0, atol=1e-3)
        np.testing.assert_allclose(one['score'], other['score'], rtol=0, atol=1e-6)


def test_folder(model_files, model, folder, tmp_path, capsys):
    predictions, images = run_demo(model_files, folder, tmp_path / 'out', '--score-thr', '0')
    names = ['a.jpg', 'b.png', 'sub/c.png']
    assert images['images'] == [dict(id=0, file_name='a.jpg', width=90, height=50),
                                dict(id=1, file_name='b.png', width=80, height=60),
                                dict(id=2, file_name='sub/c.png', width=80, height=60)]
    assert images['categories'] == [dict(id=2, name='cat'), dict(id=5, name='dog'),
                                    dict(id=9, name='bird')]
    expected = [p for i, name in enumerate(names)
                for p in expected_predictions(model, i, osp.join(folder, name))]
    assert_same_predictions(predictions, expected)
    for name in names:
        drawing = mmcv.imread(str(tmp_path / 'out' / 'vis' / name))
        assert drawing.shape == mmcv.imread(osp.join(folder, name)).shape
    out = capsys.readouterr().out
    assert '] 3/3, ' in out  # the progress bar, complete
    assert f'3 images, {len(expected)} detections scoring above 0.0 drawn' in out


def test_batches_give_what_one_by_one_gives(model_files, folder, tmp_path):
    one_by_one = run_demo(model_files, folder, tmp_path / 'one')
    batched = run_demo(model_files, folder, tmp_path / 'two', '--batch-size', '2')
    assert_same_predictions(batched[0], one_by_one[0])
    assert batched[1] == one_by_one[1]
    for name in ('a.jpg', 'b.png', 'sub/c.png'):
        assert osp.isfile(tmp_path / 'two' / 'vis' / name)


def test_glob_and_single_image(model_files, model, folder, tmp_path):
    predictions, images = run_demo(model_files, osp.join(folder, '**', '*.png'), tmp_path / 'g')
    # named inside the deepest folder holding both
    assert [image['file_name'] for image in images['images']] == ['b.png', 'sub/c.png']
    assert_same_predictions(predictions, [
        p for i, name in enumerate(['b.png', 'sub/c.png'])
        for p in expected_predictions(model, i, osp.join(folder, name))])
    _, images = run_demo(model_files, osp.join(folder, 'sub', 'c.png'), tmp_path / 'one')
    assert [image['file_name'] for image in images['images']] == ['c.png']
    assert osp.isfile(tmp_path / 'one' / 'vis' / 'c.png')


def test_video(model_files, model, tmp_path):
    path = str(tmp_path / 'clip.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 5, (80, 60))
    rng = np.random.RandomState(0)
    for _ in range(3):
        writer.write(rng.randint(0, 256, (60, 80, 3), dtype=np.uint8))
    writer.release()
    frames = list(mmcv.VideoReader(path))  # as decoded (MJPG is lossy)
    assert len(frames) == 3

    predictions, images = run_demo(model_files, path, tmp_path / 'out', '--batch-size', '2')
    names = [f'clip/00000{i}.png' for i in range(3)]
    assert [image['file_name'] for image in images['images']] == names
    assert_same_predictions(predictions, [p for i, frame in enumerate(frames)
                                          for p in expected_predictions(model, i, frame)])
    for name in names:
        assert mmcv.imread(str(tmp_path / 'out' / 'vis' / name)).shape == (60, 80, 3)


def test_without_annotation_file_category_ids_are_labels(model_files, folder, tmp_path):
    predictions, images = run_demo(model_files, folder, tmp_path / 'out',
                                   config=model_files[1])
    assert images['categories'] == [dict(id=i, name=name) for i, name in enumerate(CLASSES)]
    assert predictions and all(p['category_id'] == CLASSES.index(p['category_name'])
                               for p in predictions)


def test_unusable_inputs_are_named(model_files, tmp_path):
    empty = tmp_path / 'empty'
    os.makedirs(empty)
    (empty / 'notes.txt').write_text('not an image')
    bad_video = tmp_path / 'bad.mp4'
    bad_video.write_text('not a video')
    for source, error, message in (
            (tmp_path / 'nowhere', FileNotFoundError, 'no image, folder or video at .*nowhere'),
            (empty, FileNotFoundError, 'no image files .* in the folder .*empty'),
            (tmp_path / '*.png', FileNotFoundError, r'no image files match .*\*\.png'),
            (bad_video, OSError, 'cannot read video .*bad.mp4')):
        with pytest.raises(error, match=message):
            run_demo(model_files, str(source), tmp_path / 'out')


def test_class_not_in_annotation_file_is_named(model):
    saved = model.dataset_meta
    model.dataset_meta = dict(saved, classes=('cat', 'horse'))
    try:
        with pytest.raises(ValueError,
                           match=r"test.json: 1 of the 2 classes .* not .* \['horse'\]"):
            category_ids(model)
    finally:
        model.dataset_meta = saved
