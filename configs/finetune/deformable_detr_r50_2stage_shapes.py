# Fine-tuning on your own data (docs/finetune.md): the two-stage model trained on COCO, trained on
# with a COCO-format dataset of other classes, here the embedded shapes dataset. For your data,
# change data_root, classes and the annotation files and image folders below; the rest stays.
_base_ = '../deformable_detr_r50_2stage.py'

# A COCO checkpoint in mmdeform's format, e.g. mmdet's, converted (docs/finetune.md).
load_from = 'checkpoints/deformable_detr_r50_2stage_coco.pth'

data_root = 'data/shapes/'
classes = ('circle', 'square', 'triangle', 'cross', 'ring')
metainfo = dict(classes=classes)

model = dict(
    backbone=dict(init_cfg=None),  # the checkpoint has the backbone: no ImageNet download
    bbox_head=dict(num_classes=len(classes)))

# Loads the checkpoint's backbone, transformer and box branches; re-initialises the class
# branches (80 classes there, 5 here) but keeps the two-stage objectness row; logs every tensor
# not loaded, by name.
default_hooks = dict(finetune=dict(type='mmdeform.FinetuneHook'))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# A short schedule from converged weights: 12 epochs, lr x0.1 after 10 (lr and its x0.1 for the
# backbone, sampling offsets and reference points as in the paper's recipe).
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[10], gamma=0.1)
]
