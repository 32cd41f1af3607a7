# Table 2, the multi-scale model with a BiFPN neck (paper: 43.9 AP): the input projections of
# the base model followed by 3 BiFPN layers (mmdeform/models/necks/bifpn.py; the paper does not
# give the depth, 3 is EfficientDet-D0's).
_base_ = '../deformable_detr_r50.py'
model = dict(
    neck=dict(
        _delete_=True,
        type='BiFPN',
        in_channels=[512, 1024, 2048],
        out_channels=256,
        num_outs=4,
        num_layers=3,
        norm_cfg=dict(type='GN', num_groups=32)))
