# Multi-scale Deformable DETR shrunk to learn the embedded shapes dataset on 2 CPU cores in
# minutes: configs/deformable_detr_r50.py with the shapes dataset in place of COCO, a half-width
# ResNet-18 trained from scratch (no download), 128 channels, 3 + 3 layers and 50 queries.
# Everything else (4 levels, 8 heads, 4 points, losses, matcher, AdamW) is the paper's.
_base_ = [
    '../_base_/models/deformable_detr_r50.py', '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_50e.py', '../_base_/default_runtime.py'
]

embed_dims = 128
# Dropout off: it regularises long schedules, and on CPU drawing its masks costs 10% of a step.
attn = dict(embed_dims=embed_dims, dropout=0.0)
ffn = dict(embed_dims=embed_dims, feedforward_channels=2 * embed_dims, ffn_drop=0.0)
model = dict(
    num_queries=50,
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256], out_channels=embed_dims),
    encoder=dict(num_layers=3, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
    decoder=dict(
        num_layers=3, layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn)),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=5, embed_dims=embed_dims),
    test_cfg=dict(max_per_img=50))

train_dataloader = dict(batch_size=8, num_workers=2)

# A backbone trained from scratch learns at the full rate (the paper's x0.1 is for ImageNet
# weights). A schedule for 5 epochs rather than the paper's 50: 100 iterations of linear
# warm-up, then a cosine decay to 1%. torch's fused AdamW: the same update, ~10% less time per
# step on CPU than its per-parameter loop.
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, fused=True),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=1, max_keep_ckpts=2))
# A fixed seed: a run starts from the weights and data order of the one in docs/demo.md.
randomness = dict(seed=0)
