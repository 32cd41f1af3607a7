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


def shrink_model(cfg, levels=2, dims=16, layers=2):
    """Shrinks a config's model in place for fast tests: the ResNet-18 stem and first stage
    (stride 4, 64 channels, frozen as the configs freeze them), ``levels`` levels of ``dims``
    channels, ``layers`` encoder and decoder layers, 8 queries, 5 detections per image, no
    dropout; the rest, the variant included, as configured."""
    attn = dict(embed_dims=dims, num_heads=2, num_levels=levels, num_points=2, dropout=0.0)
    ffn = dict(embed_dims=dims, feedforward_channels=2 * dims, ffn_drop=0.0)
    cfg.merge_from_dict(dict(model=dict(
        num_queries=8,
        num_feature_levels=levels,
        backbone=dict(depth=18, num_stages=1, strides=(1, ), dilations=(1, ),
                      out_indices=(0, ), init_cfg=None),
        neck=dict(in_channels=[64], out_channels=dims, num_outs=levels,
                  norm_cfg=dict(type='GN', num_groups=2)),
        encoder=dict(num_layers=layers, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=layers, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=dims, num_heads=2, dropout=0.0),
            cross_attn_cfg=attn, ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=dims // 2, normalize=True, offset=-0.5),
        bbox_head=dict(embed_dims=dims),
        test_cfg=dict(max_per_img=5))))
    return cfg
