"""Every model config builds, takes one optimizer step with its own schedule, and predicts."""
import glob
import os

import pytest
import torch
from detector_checks import (build_detector, fake_batch, shrink_model,
                             train_one_step_and_predict)
from mmengine.config import Config
from mmcv.ops import nms
from mmengine.optim import build_optim_wrapper

from mmdeform.mmcv_ext import MissingMmcvOpError, placeholders_in_use

ROOT = os.path.dirname(os.path.dirname(__file__))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))
# Parameter counts to the nearest million: the paper's (Table 1) for ResNet-50; for the larger
# backbones, which the paper does not train, ours (docs/results.md).
PARAMS = {
    'deformable_detr_r50_single_scale.py': 34,
    'deformable_detr_r50_single_scale_dc5.py': 34,
    'deformable_detr_r50.py': 40,
    'deformable_detr_r50_refine.py': 41,
    'deformable_detr_r50_2stage.py': 41,
    'deformable_detr_r101_2stage.py': 60,
    'deformable_detr_swin-t_2stage.py': 42,
}


def test_every_config_is_listed():
    assert sorted(map(os.path.basename, CONFIGS)) == sorted(PARAMS)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_trains_one_step_and_predicts(path):
    cfg = Config.fromfile(path)
    model = build_detector(cfg)
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6) == PARAMS[os.path.basename(path)]
    losses = train_one_step_and_predict(model, cfg)
    if cfg.model.as_two_stage:
        assert 'enc_loss_iou' in losses


@pytest.mark.calls_mmcv_placeholders
def test_swin_t_runs_on_mmcv_lite():
    """mmdet's Swin is built from mmcv.cnn bricks. Under mmcv-lite every compiled mmcv op is a
    placeholder that raises when called, so the Swin-T config training a step and predicting
    above shows that it calls none; this checks that premise."""
    if not placeholders_in_use():
        pytest.skip('full mmcv is installed: its compiled ops are real, nothing to show')
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_swin-t_2stage.py'))
    assert cfg.model.backbone.type == 'SwinTransformer'
    with pytest.raises(MissingMmcvOpError, match='nms'):
        nms(torch.rand(2, 4), torch.rand(2), 0.5)


def test_bfloat16_amp_training_steps_match_in_float32(monkeypatch):
    """What ``tools/train.py --amp`` does without CUDA: bf16 autocast through the whole model and
    the op; the matcher's costs stay fp32 (in bf16, log p near 0 or 1 loses the digits that rank
    the queries)."""
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py'))
    model = build_detector(shrink_model(cfg))
    optim_wrapper = build_optim_wrapper(
        model, dict(cfg.optim_wrapper, type='mmdeform.CpuAmpOptimWrapper'))
    logit_dtypes, cost_calls = [], []
    model.bbox_head.cls_branches[-1].register_forward_hook(
        lambda module, args, output: logit_dtypes.append(output.dtype))
    for cost in model.bbox_head.assigner.match_costs:
        monkeypatch.setattr(type(cost), '__call__', recording(type(cost).__call__, cost_calls))

    model.train()
    # Small images: on CPUs without bf16 units (AVX2) the stem's bf16 convolution is ~40x slower
    # than in fp32.
    for _ in range(3):
        losses = model.train_step(fake_batch(((64, 96), (56, 80))), optim_wrapper)
        assert all(torch.isfinite(v) for v in losses.values())
    assert set(logit_dtypes) == {torch.bfloat16}  # autocast did run the model in bf16
    # 3 steps x 2 images x (2 decoder layers + the first stage) x 3 costs
    assert len(cost_calls) == 3 * 2 * 3 * 3
    assert all(autocast and dtype == torch.float32 for autocast, dtype in cost_calls)


def recording(cost_call, calls):
    """``cost_call`` that appends (autocast enabled, result dtype) to ``calls``."""

    def call(self, *args, **kwargs):
        cost = cost_call(self, *args, **kwargs)
        calls.append((torch.is_autocast_enabled('cpu'), cost.dtype))
        return cost

    return call
