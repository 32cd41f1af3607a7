# The tiny Deformable DETR of tests/test_apis trained on the tiny COCO-format dataset of
# tools_toy_modules.write_tiny_coco (8 images, 4 iterations an epoch): tests give its root with
# `--cfg-options train_dataloader.dataset.data_root=ROOT`. Shuffled data, a random flip in the
# main process (num_workers=0) and dropout exercise every random stream of a training run.
_base_ = '../test_apis/tiny_deformable_detr.py'

custom_imports = dict(imports=['tools_toy_modules'], allow_failed_imports=False)

classes = ('square', 'bar')
model = dict(
    # a ResNet-18 of a quarter of the channels: checkpoints of 3 MB instead of 130 MB
    backbone=dict(base_channels=16),
    neck=dict(in_channels=[32, 64, 128]),
    encoder=dict(layer_cfg=dict(ffn_cfg=dict(ffn_drop=0.1))),
    bbox_head=dict(num_classes=len(classes)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        data_root=None,
        metainfo=dict(classes=classes),
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=0),
        pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None

optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_epochs=2)
# an iteration warm-up and an epoch step: both kinds of schedule state must resume
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=3),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=2, milestones=[1], gamma=0.5),
]
default_hooks = dict(
    logger=dict(interval=1),
    record=dict(type='TrainRecordHook'),
    # tests interrupt a run with the environment variable INTERRUPT_AFTER_ITER=N[,kill]
    interrupt=dict(type='InterruptHook'))
