import os

import pytest
import torch
from detector_checks import build_detector
from mmdet.structures import DetDataSample
from mmengine.config import Config
from test_configs import ROOT, shrink_model

# Small enough for fast exports; not a multiple of the strides, as real inputs are not.
IMAGE_SHAPE = (60, 90)


@pytest.fixture(scope='module')
def two_stage_detector():
    """A tiny two-stage detector (the variant with the most shape logic: pixel proposals and
    their top-k), random weights, eval mode."""
    torch.manual_seed(0)
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py'))
    return build_detector(shrink_model(cfg, layers=1)).eval()


def predict(detector, inputs):
    """The detector's own predictions (``predict``, not the exported path) for a (1, 3, H, W)
    batch as (boxes, scores, labels)."""
    shape = tuple(inputs.shape[-2:])
    sample = DetDataSample(metainfo=dict(img_shape=shape, batch_input_shape=shape,
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        result = detector.predict(inputs, [sample], rescale=False)[0].pred_instances
    return result.bboxes, result.scores, result.labels
