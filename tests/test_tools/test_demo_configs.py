"""The steps of `make demo` with each demo config, on a few images of the embedded dataset:
train (with validation), test with the COCO metric, draw ground truth and detections at the
score threshold of best F1. In the test process, so that conftest's check that no mmcv op is
called covers a validation and a test run."""
import json
import os.path as osp
from glob import glob

import mmcv
import numpy as np
import pytest
import torch
from tools_loader import load_tool, run_tool

from mmdeform.apis import init_detector
from mmdeform.datasets.shapes import generate_split
from mmdeform.utils import save_checkpoint_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = sorted(glob(osp.join(ROOT, 'configs', 'demo', '*.py')))
COCO_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/bbox_mAP_s',
             'coco/bbox_mAP_m', 'coco/bbox_mAP_l')
HEADER = 18  # the band of counts above each drawing

train_tool = load_tool('train.py')
test_tool = load_tool('test.py')
draw_tool = load_tool('analysis_tools/draw_detections.py')


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_split(root, 'train', 6, show_progress=False)
    generate_split(root, 'val', 3, show_progress=False)
    return root


@pytest.fixture(autouse=True)
def _local_rank(monkeypatch):
    # parse_args exports LOCAL_RANK (for the launchers); keep it out of the other tests.
    monkeypatch.delenv('LOCAL_RANK', raising=False)


def small(shapes_root):
    """--cfg-options of the demo configs for the few images of ``shapes_root``."""
    ann_file = osp.join(shapes_root, 'annotations/instances_val.json')
    return ['--cfg-options', f'train_dataloader.dataset.data_root={shapes_root}',
            f'val_dataloader.dataset.data_root={shapes_root}',
            f'test_dataloader.dataset.data_root={shapes_root}',
            f'val_evaluator.ann_file={ann_file}', f'test_evaluator.ann_file={ann_file}',
            'train_dataloader.batch_size=3', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False']


def val_images(shapes_root):
    with open(osp.join(shapes_root, 'annotations/instances_val.json')) as f:
        return json.load(f)['images']


def test_there_are_demo_configs():
    names = [osp.basename(path) for path in DEMO_CONFIGS]
    assert 'deformable_detr_tiny_2stage_shapes.py' in names  # the one `make demo` trains
    assert 'deformable_detr_tiny_shapes.py' in names


@pytest.mark.parametrize('config', DEMO_CONFIGS, ids=osp.basename)
def test_demo_trains_evaluates_and_draws(config, shapes_root, tmp_path, monkeypatch, capsys):
    work_dir = str(tmp_path)
    run_tool(train_tool, monkeypatch, config, '--work-dir', work_dir, *small(shapes_root),
             'train_cfg.max_epochs=1')
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)

    test_dir = str(tmp_path / 'test')
    capsys.readouterr()
    run_tool(test_tool, monkeypatch, config, checkpoint, '--work-dir', test_dir,
             '--show-dir', 'drawn', *small(shapes_root))
    with open(glob(osp.join(test_dir, '*', '*.json'))[0]) as f:
        metrics = json.load(f)
    assert all(key in metrics for key in COCO_KEYS), metrics
    show_dir = glob(osp.join(test_dir, '*', 'drawn'))[0]
    assert f'drawing the detections scoring above 0.3 to {show_dir}' in capsys.readouterr().out
    for image in val_images(shapes_root):
        assert osp.isfile(osp.join(show_dir, image['file_name']))

    out_dir = str(tmp_path / 'detections')
    draw_tool.main([config, checkpoint, '--out-dir', out_dir, *small(shapes_root)])
    out = capsys.readouterr().out
    assert 'at score threshold' in out
    assert '] 3/3, ' in out  # the progress of predicting, then of drawing
    for image in val_images(shapes_root):
        drawing = mmcv.imread(osp.join(out_dir, osp.splitext(image['file_name'])[0] + '.png'))
        assert drawing.shape == (HEADER + image['height'], 2 * image['width'], 3)


@pytest.fixture(scope='module')
def random_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    checkpoint = str(tmp_path_factory.mktemp('random') / 'random.pth')
    model = init_detector(DEMO_CONFIGS[0])
    save_checkpoint_file(dict(state_dict=model.state_dict()), checkpoint)
    return checkpoint


def test_drawing_is_ground_truth_then_detections_above_the_threshold(
        shapes_root, random_checkpoint, tmp_path, capsys):
    out_dir = str(tmp_path)
    # Scores are sigmoids: none above 1, so the right half is the bare image.
    draw_tool.main([DEMO_CONFIGS[0], random_checkpoint, '--out-dir', out_dir, '--score-thr', '1',
                    '--max-images', '2', *small(shapes_root)])
    out = capsys.readouterr().out
    assert '] 3/3, ' in out and '] 2/2, ' in out  # predicting 3 images, drawing 2
    assert 'drawings (ground truth | detections scoring above 1.000)' in out
    images = val_images(shapes_root)
    assert len(glob(osp.join(out_dir, '*.png'))) == 2
    for image in images[:2]:
        drawing = mmcv.imread(osp.join(out_dir, osp.splitext(image['file_name'])[0] + '.png'))
        bare = mmcv.imread(osp.join(shapes_root, 'val', image['file_name']))
        width = image['width']
        ground_truth, detections = drawing[HEADER:, :width], drawing[HEADER:, width:]
        assert np.array_equal(detections, bare)
        assert not np.array_equal(ground_truth, bare)  # the boxes of the objects


def test_bad_arguments_are_refused(shapes_root, random_checkpoint, tmp_path, capsys):
    config = DEMO_CONFIGS[0]
    for argv, message in [([config, str(tmp_path / 'missing.pth')], 'missing.pth does not exist'),
                          ([config, random_checkpoint, '--iou-thr', '1.5'], '--iou-thr must be'),
                          ([config, random_checkpoint, '--max-images', '0'], '--max-images')]:
        with pytest.raises(SystemExit):
            draw_tool.parse_args([*argv, '--out-dir', str(tmp_path)])
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match='test_evaluator.ann_file'):
        draw_tool.main([config, random_checkpoint, '--out-dir', str(tmp_path),
                        *small(shapes_root), 'test_evaluator.ann_file='])
