"""The steps of `make demo` with each demo config, on a few images of the embedded dataset:
train (with validation), test with the COCO metric, draw the detections."""
import json
import os.path as osp
import subprocess
import sys
from glob import glob

import pytest

from mmdeform.datasets.shapes import generate_split

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = sorted(glob(osp.join(ROOT, 'configs', 'demo', '*.py')))
COCO_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/bbox_mAP_s',
             'coco/bbox_mAP_m', 'coco/bbox_mAP_l')


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_split(root, 'train', 6, show_progress=False)
    generate_split(root, 'val', 3, show_progress=False)
    return root


def run_tool(tool, *args):
    result = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *args], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_there_are_demo_configs():
    names = [osp.basename(path) for path in DEMO_CONFIGS]
    assert 'deformable_detr_tiny_2stage_shapes.py' in names  # the one `make demo` trains
    assert 'deformable_detr_tiny_shapes.py' in names


@pytest.mark.parametrize('config', DEMO_CONFIGS, ids=osp.basename)
def test_demo_trains_evaluates_and_draws(config, shapes_root, tmp_path):
    ann_file = osp.join(shapes_root, 'annotations/instances_val.json')
    small = ['--cfg-options', f'train_dataloader.dataset.data_root={shapes_root}',
             f'val_dataloader.dataset.data_root={shapes_root}',
             f'test_dataloader.dataset.data_root={shapes_root}',
             f'val_evaluator.ann_file={ann_file}', f'test_evaluator.ann_file={ann_file}',
             'train_dataloader.batch_size=3', 'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False']
    work_dir = str(tmp_path)
    run_tool('train.py', config, '--work-dir', work_dir, *small, 'train_cfg.max_epochs=1')
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)

    log = run_tool('test.py', config, checkpoint, '--work-dir', work_dir,
                   '--show-dir', 'detections', *small)
    for key in COCO_KEYS:  # printed the mmengine way, e.g. "coco/bbox_mAP_50: 0.612"
        assert f'{key}: ' in log, key
    drawn = glob(osp.join(work_dir, '*', 'detections', '*.png'))
    with open(ann_file) as f:
        assert len(drawn) == len(json.load(f)['images'])
