# Table 2, multi-scale inputs without multi-scale attention, K=4 (paper: 42.3 AP): each encoder
# query samples only the level it lies on, so no information crosses levels in the encoder. The
# decoder's cross-attention still reads all levels: object queries lie on no level, and without
# it the multi-scale inputs would not reach the decoder at all.
_base_ = '../deformable_detr_r50.py'
model = dict(encoder=dict(layer_cfg=dict(self_attn_cfg=dict(own_level_only=True))))
