"""A toy model, dataset and metric for running the tools and hooks without a detector."""
import uuid

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch import nn

from mmdeform.registry import DATASETS, METRICS, MODELS


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):
    """Fits y = sum(x) with one Linear layer; predicts one dict per input (as mmdet's
    DumpDetResults wants)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, sample_idx=None, mode='tensor'):
        outputs = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((outputs - targets) ** 2).mean())
        if mode == 'predict':
            return [dict(pred=output) for output in outputs]
        return outputs


@DATASETS.register_module(force=True)
class ToyDataset(BaseDataset):
    """``num_samples`` random (inputs, targets) pairs held in memory."""

    METAINFO = dict(classes=('toy', ))

    def __init__(self, num_samples=4, **kwargs):
        self.num_samples = num_samples
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        inputs = torch.randn(self.num_samples, 2, generator=torch.Generator().manual_seed(0))
        return [dict(inputs=x, targets=x.sum()) for x in inputs]


@METRICS.register_module(force=True)
class ToyMetric(BaseMetric):
    """The mean prediction, returned as a numpy scalar as real metrics often do."""

    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results.extend(float(sample['pred']) for sample in data_samples)

    def compute_metrics(self, results):
        return dict(mean=np.float64(np.mean(results)))


def toy_runner_cfg(work_dir, max_epochs=1, num_samples=8, batch_size=2, **kwargs):
    """Keyword arguments of an mmengine Runner that trains, validates and tests the toy model.

    Each call names a new experiment: Runners of one experiment share their message hub.
    """
    dataloader = dict(
        dataset=dict(type='ToyDataset', num_samples=num_samples),
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        batch_size=batch_size,
        num_workers=0)
    return dict(
        model=dict(type='ToyRegressor'),
        work_dir=str(work_dir),
        experiment_name=f'toy_{uuid.uuid4().hex}',
        default_scope='mmdeform',
        train_dataloader=dataloader,
        val_dataloader=dataloader,
        test_dataloader=dataloader,
        val_evaluator=dict(type='ToyMetric'),
        test_evaluator=dict(type='ToyMetric'),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        val_cfg=dict(),
        test_cfg=dict(),
        param_scheduler=dict(type='MultiStepLR', by_epoch=True, milestones=[1]),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            # save_best puts a numpy scalar (the best score) into the message hub
            checkpoint=dict(type='CheckpointHook', interval=1, save_best='toy/mean',
                            rule='greater')),
        **kwargs)
