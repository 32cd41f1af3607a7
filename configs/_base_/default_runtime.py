default_scope = 'mmdeform'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Crash-safe saving: a killed run leaves complete checkpoints and a valid last_checkpoint.
    # Besides each epoch's, a checkpoint timed_iter_N.pth every `interval_minutes` (the newest
    # only, while newer than the last epoch's): a killed run resumed with --resume loses at
    # most about that much training. None: no timed checkpoints.
    checkpoint=dict(type='mmdeform.AtomicCheckpointHook', interval=1, interval_minutes=30),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # --resume continues as if never stopped: sampler seed, random streams, place in the epoch.
    exact_resume=dict(type='mmdeform.ExactResumeHook'),
    # A non-finite loss or gradient skips the step; so many in a row stop the training.
    non_finite=dict(type='mmdeform.NonFiniteLossHook', max_consecutive=10))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
# TensorBoard as well (pip install tensorboard): this line in a config writes event files to
# WORK_DIR/TIMESTAMP/vis_data/ beside scalars.json; then `tensorboard --logdir WORK_DIR`.
# visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
