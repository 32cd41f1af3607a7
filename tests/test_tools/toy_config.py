# A tiny CPU training/testing set-up with the toy modules of tools_toy_modules.py.
_base_ = ['../../configs/_base_/default_runtime.py']

custom_imports = dict(imports=['tools_toy_modules'], allow_failed_imports=False)

model = dict(type='ToyRegressor')
dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ToyDataset', num_samples=8))
train_dataloader = dataloader
val_dataloader = dataloader
test_dataloader = dataloader
val_evaluator = dict(type='ToyMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[1])]
auto_scale_lr = dict(enable=False, base_batch_size=2)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(interval=1, save_best='toy/mean', rule='greater'))
# tests interrupt a run with the environment variable INTERRUPT_AFTER_ITER=N[,kill]
custom_hooks = [dict(type='InterruptHook')]
