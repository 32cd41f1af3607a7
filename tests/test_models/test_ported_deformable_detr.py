"""mmdet 3.3's unit test of DeformableDETR (tests/test_models/test_detectors/
test_deformable_detr.py), ported: mmdet's own configs of the three variants build our detector
in scope mmdeform (with our head, and shrunk for speed, untrained: mmdet's test starts from
random weights too). Then the contract of mmdet's constructor, against mmdet's class."""
import pytest
import torch
from detector_checks import shrink_model
from mmdet.models.detectors import DeformableDETR as MmdetDeformableDETR
from mmdet.structures import DetDataSample
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdeform.models.detectors import DeformableDETR
from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules
from mmdeform.utils.mmdet_equivalent import mmdet_config

register_all_modules(init_default_scope=False)
SIZE = 256


def build(variant):
    cfg = shrink_model(mmdet_config(variant))
    cfg.model.bbox_head.type = 'DeformableDETRFocalHead'
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
    assert type(model) is DeformableDETR
    model.init_weights()
    return model


def samples(bboxes, labels):
    sample = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), scale_factor=(1, 1),
                                         pad_shape=(SIZE, SIZE),
                                         batch_input_shape=(SIZE, SIZE)))
    sample.gt_instances = InstanceData(bboxes=bboxes, labels=labels)
    return [sample]


@pytest.mark.parametrize('variant', ['multi_scale', 'refine', 'two_stage'])
def test_deformable_detr_head_loss(variant):
    torch.manual_seed(0)
    model = build(variant)
    image = torch.rand(1, 3, SIZE, SIZE)

    # No ground truth: the class loss pushes towards background, no box loss.
    empty = model.loss(image, samples(torch.empty((0, 4)), torch.LongTensor([])))
    for key, loss in empty.items():
        if 'cls' in key:
            assert loss.item() > 0, key
        else:
            assert 'bbox' in key or 'iou' in key
            assert loss.item() == 0, key

    # One box: every loss is positive for random weights.
    one_gt = samples(torch.Tensor([[23.6667, 23.8757, 238.6326, 151.8874]]),
                     torch.LongTensor([2]))
    losses = model.loss(image, one_gt)
    assert all(loss.item() > 0 for loss in losses.values()), losses

    model.eval()
    model._forward(image, batch_data_samples=one_gt)
    model.predict(image, batch_data_samples=one_gt, rescale=True)


def arguments(dims=16, levels=2, **overrides):
    """mmdet's multi-scale config, shrunk to ``dims`` channels on ``levels`` levels, with
    ``overrides``, as constructor arguments."""
    cfg = shrink_model(mmdet_config('multi_scale'), levels=levels, dims=dims).model
    cfg.pop('type')
    cfg.bbox_head.type = 'DeformableDETRFocalHead'
    return {**cfg.to_dict(), **overrides}


def error_type(cls, scope, **overrides):
    with DefaultScope.overwrite_default_scope(scope):
        try:
            cls(**arguments(**overrides))
        except Exception as error:  # the type is what is compared
            return type(error)
    return None


@pytest.mark.parametrize('overrides', [
    dict(bbox_head=None), dict(decoder=None), dict(encoder=None),
    dict(positional_encoding=None), dict(bbox_head=None, decoder=None)])
def test_missing_config_raises_mmdets_exception(overrides):
    ours = error_type(DeformableDETR, 'mmdeform', **overrides)
    bbox_head = overrides.get('bbox_head', dict(type='DeformableDETRHead', num_classes=80))
    theirs = error_type(MmdetDeformableDETR, 'mmdet', **dict(overrides, bbox_head=bbox_head))
    assert ours is theirs is not None


def test_head_arguments_set_by_detector_raise_mmdets_assertion():
    head = dict(arguments()['bbox_head'], num_pred_layer=3)
    with pytest.raises(AssertionError, match='num_pred_layer'):
        DeformableDETR(**arguments(bbox_head=head))


def test_defaults_are_mmdets():
    # One level of the backbone's 64 channels, so that it runs without a neck.
    given = arguments(dims=64, levels=1)
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = DeformableDETR(**{k: v for k, v in given.items()
                                  if k not in ('num_queries', 'neck')})
    assert model.num_queries == 100 and model.query_embedding.num_embeddings == 100
    assert not model.with_neck
    model.init_weights()
    model.eval()
    image = torch.rand(1, 3, 64, 64)
    sample = samples(torch.empty((0, 4)), torch.LongTensor([]))[0]
    sample.set_metainfo(dict(img_shape=(64, 64), batch_input_shape=(64, 64)))
    # The encoder sees the backbone's stride-4 map as is.
    assert model.extract_feat(image)[0].shape == (1, 64, 16, 16)
    classes, boxes = model._forward(image, [sample])
    assert boxes.shape[-2:] == (100, 4)


def test_mmdet_head_name_builds_mmdets_head():
    """Our head has a name of its own: mmdet's name builds mmdet's head. (mmdet's default
    softmax loss_cls does not build for DETRHead's subclasses, so it is given, as mmdet's
    configs give it.)"""
    from mmdet.models.dense_heads import DeformableDETRHead
    head_cfg = arguments()['bbox_head']
    with DefaultScope.overwrite_default_scope('mmdeform'):
        head = MODELS.build(dict(head_cfg, type='DeformableDETRHead'))
    assert type(head) is DeformableDETRHead
