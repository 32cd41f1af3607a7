# Table 2, the multi-scale model with an FPN neck (paper: 43.8 AP, as without it): mmdet's FPN
# replaces the input projections (top-down pathway plus 3x3 output convs; P6 from a 3x3
# stride-2 conv on P5's output), with the GroupNorm of the projections it replaces.
_base_ = '../deformable_detr_r50.py'
model = dict(
    neck=dict(
        _delete_=True,
        type='FPN',
        in_channels=[512, 1024, 2048],
        out_channels=256,
        num_outs=4,
        add_extra_convs='on_output',
        norm_cfg=dict(type='GN', num_groups=32)))
