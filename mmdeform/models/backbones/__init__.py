from .dc5_resnet import DC5ResNet

__all__ = ['DC5ResNet']
