# Table 2, no multi-scale inputs, no multi-scale attention, K=1 (paper: 39.7 AP): the
# single-scale model with one sampling point per head; the attention is then a deformable conv.
_base_ = '../deformable_detr_r50_single_scale.py'
model = dict(encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_points=1))),
             decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_points=1))))
