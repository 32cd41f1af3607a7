"""A toy model, dataset and metric for running the tools and hooks without a detector; hooks
that record and interrupt a training; a tiny COCO-format dataset for the real detector."""
import base64
import json
import os
import os.path as osp
import signal
import subprocess
import time
import uuid

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from PIL import Image
from torch import nn

from mmdeform.registry import DATASETS, HOOKS, METRICS, MODELS
from mmdeform.utils import atomic_write


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
    """``num_samples`` random (inputs, targets) pairs held in memory; the targets of the samples
    in ``nan_indices`` are NaN."""

    METAINFO = dict(classes=('toy', ))

    def __init__(self, num_samples=4, nan_indices=(), **kwargs):
        self.num_samples = num_samples
        self.nan_indices = set(nan_indices)
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        inputs = torch.randn(self.num_samples, 2, generator=torch.Generator().manual_seed(0))
        return [dict(inputs=x, targets=x.sum() * (np.nan if i in self.nan_indices else 1))
                for i, x in enumerate(inputs)]


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


@HOOKS.register_module(force=True)
class TrainRecordHook(Hook):
    """Appends a JSON line per training iteration to ``WORK_DIR/train_record_rank{RANK}.jsonl``:
    the iteration, the exact loss, the first learning rate, the image ids of the batch and the
    first dropout mask the iteration drew (``dropout``, read by :func:`dropout_mask`; None in a
    model without dropout); and one per checkpoint save, naming the process that saved it."""

    priority = 'LOWEST'

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._mask = None
        dropout = next((module for module in model.modules()
                        if isinstance(module, nn.Dropout) and module.p > 0), None)
        if dropout is not None:
            dropout.register_forward_hook(self._record_mask)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._mask = None

    def _record_mask(self, module, args, output):
        # Where the input is 0 the output is 0 either way: the mask is known where it is not.
        if self._mask is None and module.training:
            known = args[0] != 0
            self._mask = dict(shape=list(output.shape), **{
                name: base64.b64encode(np.packbits(elements.numpy())).decode()
                for name, elements in (('dropped', known & (output == 0)),
                                       ('kept', known & (output != 0)))})

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        samples = data_batch.get('data_samples', [])
        self._write(runner, dict(iter=runner.iter + 1, loss=outputs['loss'].item(),
                                 lr=runner.optim_wrapper.get_lr()['lr'][0],
                                 img_ids=[sample.img_id for sample in samples],
                                 dropout=self._mask))

    def before_save_checkpoint(self, runner, checkpoint):
        self._write(runner, dict(saved_iter=checkpoint['meta']['iter'], rank=get_rank()))

    @staticmethod
    def _write(runner, record):
        with open(osp.join(runner.work_dir, f'train_record_rank{get_rank()}.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\n')


def dropout_mask(record):
    """The dropout mask of a TrainRecordHook record, flattened: the elements that were zeroed
    and those that were kept (neither where the input was 0, which says nothing)."""
    size = int(np.prod(record['dropout']['shape']))
    dropped, kept = (np.unpackbits(np.frombuffer(base64.b64decode(record['dropout'][name]),
                                                 np.uint8))[:size].astype(bool)
                     for name in ('dropped', 'kept'))
    return dropped, kept


def read_train_records(work_dir, rank=0):
    """The records of TrainRecordHook: {iteration: record} (the last record of an iteration
    trained again after a resume) and the checkpoint-save records."""
    with open(osp.join(work_dir, f'train_record_rank{rank}.jsonl')) as f:
        records = [json.loads(line) for line in f]
    iterations = {record['iter']: record for record in records if 'iter' in record}
    return iterations, [record for record in records if 'saved_iter' in record]


def assert_same_iterations(records, reference_records, iterations):
    """The records of ``iterations`` have the reference's loss, learning rate, images and
    dropout mask."""
    for iteration in iterations:
        for key in ('loss', 'lr', 'img_ids', 'dropout'):
            assert records[iteration][key] == reference_records[iteration][key], \
                (iteration, key)


def run_until_killed(command, env, work_dir, num_processes=1, timeout=600):
    """Run ``command``, a training of ``num_processes`` processes whose InterruptHook waits for
    the kill, and SIGKILL them all once they wait (as a preempted job is), the launcher too."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    waiting = [osp.join(work_dir, f'waiting_for_kill_rank{rank}')
               for rank in range(num_processes)]
    deadline = time.monotonic() + timeout
    with process:
        while not all(osp.exists(path) for path in waiting):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, 'the training did not reach the interruption'
            time.sleep(0.2)
        for path in waiting:  # torchrun starts each in a session of its own
            with open(path) as f:
                os.kill(int(f.read()), signal.SIGKILL)
        os.killpg(process.pid, signal.SIGKILL)


class SimulatedCrash(Exception):
    """Raised by InterruptHook."""


@HOOKS.register_module(force=True)
class InterruptHook(Hook):
    """Interrupts the training after iteration ``after_iter`` (counted from 1, after any
    checkpoint of that iteration): raises SimulatedCrash or, with ``wait_for_kill``, writes its
    process id into ``WORK_DIR/waiting_for_kill_rank{RANK}`` and sleeps until killed.

    ``after_iter`` None: the environment variable INTERRUPT_AFTER_ITER (``N``, or ``N,kill``
    to wait for the kill) says when, if set: a setting of one launch of tools/train.py, where
    ``--cfg-options`` would stay in the config that ``--resume`` reuses.
    """

    priority = 'LOWEST'

    def __init__(self, after_iter=None, wait_for_kill=False):
        if after_iter is None and os.environ.get('INTERRUPT_AFTER_ITER'):
            after_iter, _, kill = os.environ['INTERRUPT_AFTER_ITER'].partition(',')
            after_iter, wait_for_kill = int(after_iter), kill == 'kill'
        self.after_iter = after_iter
        self.wait_for_kill = wait_for_kill

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 != self.after_iter:
            return
        if not self.wait_for_kill:
            raise SimulatedCrash(f'interrupted after iteration {self.after_iter}')
        with atomic_write(osp.join(runner.work_dir, f'waiting_for_kill_rank{get_rank()}'),
                          'w') as f:
            f.write(str(os.getpid()))
        time.sleep(600)


def write_tiny_coco(root, num_images=8, classes=('square', 'bar')):
    """A COCO-format detection dataset under ``root``: ``images/*.png`` of noise with one or two
    filled boxes, alternately 64x48 and 48x64 (two aspect-ratio groups), and
    ``annotations/train.json``."""
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        width, height = (64, 48) if image_id % 2 else (48, 64)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for label in range(1 + image_id % 2):
            w, h = (int(v) for v in rng.integers(8, 24, 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            pixels[y:y + h, x:x + w] = 255 * label
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=label + 1, bbox=[x, y, w, h], area=w * h,
                                    iscrowd=0))
        file_name = f'{image_id}.png'
        Image.fromarray(pixels).save(osp.join(root, 'images', file_name))
        images.append(dict(id=image_id, file_name=file_name, width=width, height=height))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    with open(osp.join(root, 'annotations', 'train.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
