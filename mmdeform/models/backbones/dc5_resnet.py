"""The DC5 backbone (DETR sec. 4; Deformable DETR's single-scale DC5 variant): a ResNet whose
last stage is dilated instead of strided, so that C5 has stride 16."""
from mmdet.models.backbones import ResNet

from mmdeform.registry import MODELS


@MODELS.register_module()
class DC5ResNet(ResNet):
    """mmdet's ResNet with its last stage at stride 1 and its 3x3 convs dilated by 2, except
    the first block's, which keeps dilation 1.

    That exception is torchvision's ``replace_stride_with_dilation``, the authors' backbone (and
    timm's ``output_stride=16``, so Hugging Face's DC5): the first block still sees the
    undilated grid it strided over before. mmdet's ``strides=(1, 2, 2, 1), dilations=(1, 1, 1,
    2)`` dilates that block too, another function of the same weights.

    Args:
        depth (int): 50, 101 or 152: the dilated 3x3 conv is a Bottleneck's (torchvision has no
            dilated BasicBlock).
        **kwargs: mmdet ResNet's other arguments; ``strides`` and ``dilations`` are DC5's,
            ``num_stages`` 4.
    """

    STRIDES, DILATIONS = (1, 2, 2, 1), (1, 1, 1, 2)

    def __init__(self, depth, **kwargs):
        if depth < 50:
            raise ValueError(f'DC5ResNet dilates Bottleneck blocks: depth must be 50, 101 or '
                             f'152, not {depth}')
        fixed = {'strides', 'dilations'} & set(kwargs)
        if fixed:
            raise ValueError(f'DC5ResNet sets {" and ".join(sorted(fixed))} itself: remove them '
                             'from the backbone config')
        if kwargs.setdefault('num_stages', 4) != 4:
            raise ValueError(f'DC5ResNet dilates the 4th stage: num_stages must be 4, not '
                             f'{kwargs["num_stages"]}')
        super().__init__(depth, strides=self.STRIDES, dilations=self.DILATIONS, **kwargs)
        first_conv = getattr(self, self.res_layers[-1])[0].conv2
        first_conv.dilation = first_conv.padding = (1, 1)
