import os

import pytest
import torch
from detector_checks import build_detector, shrink_model
from mmengine.config import Config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), 'configs')


@pytest.fixture(scope='module')
def two_stage_detector():
    """A tiny two-stage detector (the variant with the most shape logic: pixel proposals and
    their top-k), random weights, eval mode."""
    torch.manual_seed(0)
    cfg = Config.fromfile(os.path.join(CONFIGS, 'deformable_detr_r50_2stage.py'))
    return build_detector(shrink_model(cfg, layers=1)).eval()
