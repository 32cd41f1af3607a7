"""Shared by the config tests: the batch the data pipeline hands the model, and the check that a
config's detector trains one optimizer step and predicts."""
import torch
from mmdet.structures import DetDataSample
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules


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


def build_detector(cfg):
    """The config's detector, initialized, without downloading the ImageNet backbone."""
    register_all_modules()
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def train_one_step_and_predict(model, cfg):
    """One optimizer step with the config's optimizer on :func:`fake_batch`, then predictions.

    Checks that the losses are finite, the step moved the encoder and the head, and every image
    gets 100 boxes inside it. Returns the losses.
    """
    with DefaultScope.overwrite_default_scope('mmdeform'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        model.train()
        losses = model.train_step(fake_batch(), optim_wrapper)
        assert all(torch.isfinite(v) for v in losses.values())
        assert 'loss_cls' in losses and 'd0.loss_bbox' in losses
        changed = [n for n, p in model.named_parameters() if n in before
                   and not torch.equal(p, before[n])]
        assert any('encoder' in n for n in changed) and any('bbox_head' in n for n in changed)

        model.eval()
        with torch.no_grad():
            results = model.test_step(fake_batch())
    for result in results:
        assert len(result.pred_instances) == 100
        assert (result.pred_instances.bboxes[:, 2:] <= torch.tensor([128., 96.])).all()
    return losses
