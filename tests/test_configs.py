"""Every model config builds, takes one optimizer step with its own schedule, and predicts."""
import glob
import os

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules

ROOT = os.path.dirname(os.path.dirname(__file__))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))
# The paper's parameter counts (Table 1), to the nearest million.
PARAMS = {
    'deformable_detr_r50_single_scale.py': 34,
    'deformable_detr_r50_single_scale_dc5.py': 34,
    'deformable_detr_r50.py': 40,
    'deformable_detr_r50_refine.py': 41,
    'deformable_detr_r50_2stage.py': 41,
}


def fake_batch(shapes=((96, 128), (80, 112))):
    """What the data pipeline hands the model: uint8 images and packed samples."""
    inputs, samples = [], []
    for h, w in shapes:
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 12., 60., 70.], [30., 5., 90., 40.]]),
            labels=torch.tensor([3, 17]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_every_config_is_listed():
    assert sorted(map(os.path.basename, CONFIGS)) == sorted(PARAMS)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_trains_one_step_and_predicts(path):
    register_all_modules()
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None  # no ImageNet download in tests
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        params = sum(p.numel() for p in model.parameters())
        assert round(params / 1e6) == PARAMS[os.path.basename(path)]

        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        model.train()
        losses = model.train_step(fake_batch(), optim_wrapper)
        assert all(torch.isfinite(v) for v in losses.values())
        assert 'loss_cls' in losses and 'd0.loss_bbox' in losses
        if cfg.model.as_two_stage:
            assert 'enc_loss_iou' in losses
        changed = [n for n, p in model.named_parameters() if n in before
                   and not torch.equal(p, before[n])]
        assert any('encoder' in n for n in changed) and any('bbox_head' in n for n in changed)

        model.eval()
        with torch.no_grad():
            results = model.test_step(fake_batch())
    for result in results:
        assert len(result.pred_instances) == 100
        assert (result.pred_instances.bboxes[:, 2:] <= torch.tensor([128., 96.])).all()


def test_bfloat16_autocast_training_step():
    register_all_modules()
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py'))
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
        data = model.data_preprocessor(fake_batch(), True)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model.loss(data['inputs'], data['data_samples'])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
