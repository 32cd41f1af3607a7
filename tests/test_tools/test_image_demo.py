"""tools/image_demo.py draws a tiny detector's detections onto a PNG of the image's size."""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from tools_loader import load_tool

from mmdeform.apis import init_detector
from mmdeform.utils import save_checkpoint_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(ROOT, 'tests', 'test_apis', 'tiny_deformable_detr.py')


@pytest.fixture
def inputs(tmp_path):
    """An image file (a flat grey 60x80, so drawn boxes show) and a checkpoint of the tiny
    model."""
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.full((60, 80, 3), 128, np.uint8), image)
    torch.manual_seed(0)
    checkpoint = str(tmp_path / 'tiny.pth')
    save_checkpoint_file(dict(state_dict=init_detector(TINY_CONFIG).state_dict()), checkpoint)
    return image, checkpoint


@pytest.mark.parametrize('score_thr, drawn', [(0.0, True), (1.0, False)])
def test_writes_a_png_of_the_image_size(inputs, tmp_path, capsys, score_thr, drawn):
    image, checkpoint = inputs
    out_file = str(tmp_path / 'out' / 'drawn.png')
    load_tool('image_demo.py').main([image, TINY_CONFIG, checkpoint, '--out-file', out_file,
                       '--score-thr', str(score_thr)])
    out = mmcv.imread(out_file)
    assert out.shape == (60, 80, 3)
    # Scores are sigmoids, so all of the 100 detections are above 0 and none above 1.
    assert (out != 128).any() == drawn
    assert f'{100 if drawn else 0} detections scoring above {score_thr}' in capsys.readouterr().out


def test_missing_image_is_named(inputs, tmp_path):
    _, checkpoint = inputs
    with pytest.raises(FileNotFoundError, match='image file not found: .*nowhere.png'):
        load_tool('image_demo.py').main([str(tmp_path / 'nowhere.png'), TINY_CONFIG, checkpoint,
                           '--out-file', str(tmp_path / 'out.png')])
