# Table 2, multi-scale inputs without multi-scale attention, K=1 (paper: 41.4 AP).
_base_ = './deformable_detr_r50_no_ms_attn.py'
model = dict(encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_points=1))),
             decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_points=1))))
