"""DC5ResNet dilates as torchvision's replace_stride_with_dilation (the authors' backbone) and
timm's output_stride=16 do; the reference is transformers' ResNet-50 dilated that way by hand."""
import pytest
import torch
from mmdet.models.backbones import ResNet
from transformers import ResNetBackbone, ResNetConfig

from mmdeform.converters.huggingface import BACKBONE, HF_RESNET_PAIRS
from mmdeform.converters.key_renames import rename_keys
from mmdeform.models.backbones import DC5ResNet


def torchvision_dc5(model):
    """The last stage at stride 1; its 3x3 convs dilated by 2 but in the first block."""
    first, *others = model.encoder.stages[3].layers
    first.layer[1].convolution.stride = first.shortcut.convolution.stride = (1, 1)
    for block in others:
        conv = block.layer[1].convolution
        conv.dilation = conv.padding = (2, 2)
    return model


def test_dc5_resnet_is_torchvisions_dilation():
    torch.manual_seed(0)
    reference = torchvision_dc5(ResNetBackbone(ResNetConfig(out_features=['stage4']))).eval()
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith('running_var'):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.05)
    weights = rename_keys({BACKBONE + k: v for k, v in reference.state_dict().items()},
                          HF_RESNET_PAIRS, 'transformers ResNet')
    weights = {k[len(BACKBONE):]: v for k, v in weights.items()}
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = reference(images).feature_maps[0]
    assert expected.shape[-2:] == (4, 6)  # stride 16

    ours = DC5ResNet(depth=50, out_indices=(3, ))
    mmdet_dilation = ResNet(depth=50, out_indices=(3, ), strides=(1, 2, 2, 1),
                            dilations=(1, 1, 1, 2))
    for model in (ours, mmdet_dilation):
        model.load_state_dict(weights, strict=True)
        model.eval()  # mmdet's ResNet.train returns None
    with torch.no_grad():
        torch.testing.assert_close(ours(images)[0], expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(mmdet_dilation(images)[0], expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize('kwargs', [dict(depth=18), dict(depth=50, strides=(1, 2, 2, 2)),
                                    dict(depth=50, num_stages=3)])
def test_dc5_resnet_refuses_what_it_cannot_be(kwargs):
    with pytest.raises(ValueError, match='DC5ResNet'):
        DC5ResNet(**kwargs)
