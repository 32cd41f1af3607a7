# A tiny multi-scale Deformable DETR for fast tests of the inference API and the tools:
# ResNet-18, 32 channels, 1 + 1 layers, 10 queries, small test images.
_base_ = '../../configs/deformable_detr_r50.py'

dims = 32
attn = dict(embed_dims=dims, num_heads=8, num_levels=4, num_points=2, dropout=0.0)
ffn = dict(embed_dims=dims, feedforward_channels=64, ffn_drop=0.0)
model = dict(
    num_queries=10,
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512], out_channels=dims,
              norm_cfg=dict(type='GN', num_groups=8)),
    encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
    decoder=dict(num_layers=1, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=dims, num_heads=8, dropout=0.0),
        cross_attn_cfg=attn, ffn_cfg=ffn)),
    positional_encoding=dict(num_feats=dims // 2, normalize=True, offset=-0.5),
    bbox_head=dict(embed_dims=dims))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
