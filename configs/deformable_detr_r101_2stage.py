# ++ two-stage with a ResNet-101 backbone (ImageNet weights from torchvision, as mmdet's R101
# configs). Another variant with this backbone: the same lines over its R50 config.
_base_ = './deformable_detr_r50_2stage.py'
model = dict(
    backbone=dict(depth=101,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
