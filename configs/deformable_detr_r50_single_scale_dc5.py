# Single-scale, DC5: the last stage dilated instead of strided, so C5 has stride 16, with the
# authors' (torchvision's) dilation: the stage's first block undilated (paper: 41.5 AP, 34M).
_base_ = './deformable_detr_r50_single_scale.py'
# (mmdeform. prefixed: mmdet's equivalent model, tools/analysis_tools/benchmark.py, builds it too)
model = dict(backbone=dict(type='mmdeform.DC5ResNet'))
