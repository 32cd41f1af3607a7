# The embedded demo dataset (mmdeform.datasets.shapes): synthetic shapes in COCO format, written
# by `python tools/misc/generate_shapes_dataset.py data/shapes`. Read like any COCO dataset; only
# the paths, the classes and the image scales differ from COCO's.
_base_ = './coco_detection.py'

data_root = 'data/shapes/'
metainfo = dict(
    classes=('circle', 'square', 'triangle', 'cross', 'ring'),
    palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30), (0, 160, 80), (150, 60, 200)])

# Images at about half their generated size (shorter side 128..160 in training, tested at the
# largest training scale as COCO's 480..800 / 800), which keeps a CPU training run to minutes;
# the smallest objects (16 px) become ~8 px.
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color', skip_unreadable=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoiceResize', scales=[(short, 384) for short in (128, 144, 160)],
         keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='Resize', scale=(384, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
