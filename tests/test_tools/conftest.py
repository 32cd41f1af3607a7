import os.path as osp

import pytest
from tools_loader import load_tool, run_tool
from tools_toy_modules import write_tiny_coco

TINY_DETR_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), 'tiny_detr_config.py')


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    """The 8-image COCO-format dataset of :func:`write_tiny_coco`, once per test module."""
    root = tmp_path_factory.mktemp('tiny_coco')
    write_tiny_coco(root)
    return root


@pytest.fixture(scope='session')
def trained_tiny_checkpoint(tmp_path_factory):
    """The checkpoint tools/train.py writes after one epoch (4 iterations) of the tiny Deformable
    DETR of ``TINY_DETR_CONFIG`` on the tiny COCO-format dataset: weights, optimizer, schedulers
    and mmengine's message hub, class names ('square', 'bar') in its meta."""
    root = tmp_path_factory.mktemp('trained_tiny')
    write_tiny_coco(root / 'data')
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_tool(load_tool('train.py'), monkeypatch, TINY_DETR_CONFIG, '--work-dir',
                 str(root / 'work_dir'), '--cfg-options', 'train_cfg.max_epochs=1',
                 f'train_dataloader.dataset.data_root={root / "data"}')
    return str(root / 'work_dir' / 'epoch_1.pth')
