# Single-scale, DC5: the last stage dilated instead of strided, so C5 has stride 16
# (paper: 41.5 AP, 34M parameters).
_base_ = './deformable_detr_r50_single_scale.py'
model = dict(backbone=dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)))
