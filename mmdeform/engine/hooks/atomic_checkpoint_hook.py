import glob
import os
import os.path as osp
import time
from typing import Optional

import torch
from mmengine.dist import broadcast, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mmdeform.registry import HOOKS
from mmdeform.utils.checkpoint import PARTIAL_SUFFIX, atomic_write

# The message hub's (and so the checkpoints') record of the step of the kept timed checkpoint.
_TIMED_STEP = 'timed_ckpt_step'


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local storage, each file written at once (:func:`atomic_write`)."""

    def put(self, obj: bytes, filepath) -> None:
        with atomic_write(filepath, 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        with atomic_write(filepath, 'w', encoding=encoding) as f:
            f.write(obj)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that a killed process cannot leave with a broken checkpoint,
    and that also saves every ``interval_minutes``.

    mmengine writes a checkpoint straight under its final name, rewrites ``last_checkpoint`` in
    place, and with ``max_keep_ckpts`` deletes the oldest checkpoint before writing the new one:
    a process killed meanwhile can leave a truncated checkpoint, an empty ``last_checkpoint``,
    or (``max_keep_ckpts=1``) no checkpoint at all. Here, on local storage, every checkpoint is
    written to a temporary file and renamed (:class:`AtomicLocalBackend`); ``last_checkpoint``
    is renamed into place once the checkpoint is complete; outdated checkpoints are deleted last;
    and the temporary files of a killed run are deleted when training starts again.

    With ``interval_minutes``, a checkpoint ``timed_iter_N.pth`` is also saved after the first
    iteration that ends that many minutes after the last save (of either kind), so that a killed
    run loses at most about that much training (``--resume`` continues in the middle of the
    epoch, see :class:`ExactResumeHook`). Only the newest timed checkpoint is kept, and only
    while it is newer than the newest interval checkpoint. The first process decides when, by
    its clock, for all: saving is collective.

    Storage given by ``backend_args``, ``file_client_args`` or a URI ``out_dir``
    (``s3://...``) is used as configured.

    Args:
        interval_minutes (float, optional): Minutes between timed checkpoints; None: none.
        **kwargs: The arguments of ``CheckpointHook``.
    """

    timed_filename_tmpl = 'timed_iter_{}.pth'

    def __init__(self, interval_minutes: Optional[float] = None, **kwargs) -> None:
        if interval_minutes is not None and not interval_minutes > 0:
            raise ValueError('AtomicCheckpointHook: interval_minutes must be a positive number '
                             f'of minutes or None, not {interval_minutes!r}')
        storage_given = any(kwargs.get(key) is not None
                            for key in ('backend_args', 'file_client_args'))
        if not storage_given and '://' not in str(kwargs.get('out_dir') or ''):
            kwargs['backend_args'] = dict(backend='atomic_local')
        super().__init__(**kwargs)
        self.interval_minutes = interval_minutes
        self._last_save_time = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._last_save_time = time.monotonic()
        if is_main_process() and isinstance(self.file_backend, AtomicLocalBackend):
            for partial in glob.glob(osp.join(self.out_dir, '.*' + PARTIAL_SUFFIX)):
                runner.logger.info(f'Deleting {partial}, left by an interrupted save')
                os.remove(partial)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not self._timed_save_due():
            return
        step = runner.iter + 1
        runner.logger.info(f'Saving checkpoint at {step} iterations: {self.interval_minutes} '
                           'minutes since the last')
        outdated_timed_step = runner.message_hub.get_info(_TIMED_STEP)
        runner.message_hub.update_info(_TIMED_STEP, step)
        self._save(runner, self.timed_filename_tmpl.format(step),
                   meta=dict(epoch=runner.epoch, iter=step), by_epoch=False)
        if is_main_process() and outdated_timed_step is not None:
            self._remove(self.timed_filename_tmpl.format(outdated_timed_step))

    def _timed_save_due(self) -> bool:
        """Whether ``interval_minutes`` have passed since the last save, by the first process's
        clock."""
        if self.interval_minutes is None:
            return False
        due = torch.tensor(time.monotonic() - self._last_save_time >= 60 * self.interval_minutes,
                           dtype=torch.uint8)
        broadcast(due, src=0)
        return bool(due)

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated_steps = self._keep(runner, step)
        # a timed checkpoint is kept only while it is the newest
        outdated_timed_step = runner.message_hub.get_info(_TIMED_STEP)
        runner.message_hub.update_info(_TIMED_STEP, None)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._save(runner, filename, meta, by_epoch=self.by_epoch)
        if not is_main_process():
            return
        outdated = [self.filename_tmpl.format(step) for step in outdated_steps]
        if outdated_timed_step is not None:
            outdated.append(self.timed_filename_tmpl.format(outdated_timed_step))
        for filename in outdated:
            self._remove(filename)

    def _save(self, runner, filename, meta, by_epoch) -> None:
        """Save the checkpoint ``filename`` and point ``last_checkpoint`` to it."""
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=self.backend_args,
            **self.args)
        self._last_save_time = time.monotonic()
        if is_main_process():
            with atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                f.write(self.file_backend.join_path(self.out_dir, filename))

    def _keep(self, runner, step) -> list:
        """Count ``step`` among the ``max_keep_ckpts`` kept checkpoints (in the message hub, for
        resuming); return the steps this pushes out."""
        if self.max_keep_ckpts <= 0:
            return []
        if self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step:
            return []  # the same step saved again, after a new best checkpoint
        outdated = [self.keep_ckpt_ids.popleft()] \
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts else []
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        return outdated

    def _remove(self, filename) -> None:
        path = self.file_backend.join_path(self.out_dir, filename)
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed saves directories
            self.file_backend.rmtree(path)
