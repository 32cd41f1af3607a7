"""The BiFPN neck: the levels and channels the detector expects, and information flowing both
ways (unlike ChannelMapper, every output depends on every input)."""
import pytest
import torch

from mmdeform.registry import MODELS

# ResNet's C3, C4, C5 of an odd-sized 93 x 135 image (strides 8, 16, 32, rounded up).
INPUT_SHAPES = [(512, 12, 17), (1024, 6, 9), (2048, 3, 5)]


def bifpn(**kwargs):
    cfg = dict(type='BiFPN', in_channels=[512, 1024, 2048], out_channels=64, num_outs=4,
               num_layers=2, norm_cfg=dict(type='GN', num_groups=8))
    return MODELS.build(dict(cfg, **kwargs)).eval()


def backbone_maps():
    return [torch.randn(2, *shape) for shape in INPUT_SHAPES]


def test_levels_and_channels():
    outs = bifpn()(backbone_maps())
    # The extra level is a 3x3 stride-2 conv on C5: ceil(3 / 2) x ceil(5 / 2).
    assert [tuple(out.shape) for out in outs] == [
        (2, 64, 12, 17), (2, 64, 6, 9), (2, 64, 3, 5), (2, 64, 2, 3)]


@pytest.mark.parametrize('source, target', [(2, 0), (0, 3)], ids=['top-down', 'bottom-up'])
def test_every_output_sees_every_input(source, target):
    neck, inputs = bifpn(), backbone_maps()
    inputs[source].requires_grad_(True)
    neck(inputs)[target].sum().backward()
    assert inputs[source].grad.abs().sum() > 0


def test_fusion_weights_are_learned():
    neck = bifpn(num_layers=1)
    sum(out.square().sum() for out in neck(backbone_maps())).backward()
    fusion_weights = [p for name, p in neck.named_parameters() if name.endswith('.weights')]
    assert len(fusion_weights) == 2 * 3  # (L - 1) top-down and (L - 1) bottom-up nodes
    assert all(p.grad.abs().sum() > 0 for p in fusion_weights)


def test_too_few_outputs_is_refused():
    with pytest.raises(ValueError, match='num_outs'):
        bifpn(num_outs=2)
