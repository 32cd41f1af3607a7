# The paper's recipe: AdamW lr 2e-4, weight decay 1e-4, lr x0.1 for the backbone, the sampling
# offsets and the reference points; gradient norm clipped at 0.1; 50 epochs, lr x0.1 at 40;
# total batch 32 (--auto-scale-lr rescales lr to the actual total batch).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'sampling_offsets': dict(lr_mult=0.1),
            'reference_points': dict(lr_mult=0.1),
        }))

max_epochs = 50
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[40], gamma=0.1)
]

auto_scale_lr = dict(enable=False, base_batch_size=32)
