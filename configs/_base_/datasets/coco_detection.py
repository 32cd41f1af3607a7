# COCO 2017 with the paper's augmentation: horizontal flip, then either a multi-scale resize
# (shorter side 480..800 step 32, longer side at most 1333) or resize to 400/500/600, a random
# 384..600 crop and the same multi-scale resize. Test: shorter side 800, longer at most 1333.
# The checked dataset and image loader (mmdeform.datasets, docs/data.md) reject what cannot be
# repaired in the annotations up front, repair (clip) or drop bad boxes with a count in the log,
# and give every image 3 channels; in training an unreadable image is skipped with a warning, in
# evaluation it fails the run with its name (a metric over fewer images is not comparable).
dataset_type = 'CheckedCocoDataset'
data_root = 'data/coco/'
backend_args = None

multi_scale = [(short, 1333) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color', skip_unreadable=True,
         backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True)],
            [
                # Aspect ratios of COCO images stay below 7: (600, 4200) never caps the
                # longer side, as in the reference implementation.
                dict(type='RandomChoiceResize', scales=[(400, 4200), (500, 4200), (600, 4200)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# mmdet's CocoMetric box AP, matched while the images arrive: the same numbers in flat memory
# (mmdeform/evaluation). For result files (format_only, outfile_prefix) use type='CocoMetric'.
val_evaluator = dict(
    type='StreamingCocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric='bbox',
    backend_args=backend_args)
test_evaluator = val_evaluator

# The head's num_classes must equal the number of classes of the datasets (checked before
# training, validation and testing): more would crash CocoMetric at the end of an epoch.
custom_hooks = [dict(type='ClassNumberCheckHook')]
