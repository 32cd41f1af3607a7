import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mmdeform.registry import HOOKS
from mmdeform.utils.checkpoint import PARTIAL_SUFFIX, atomic_write


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
    """mmengine's ``CheckpointHook`` that a killed process cannot leave with a broken checkpoint.

    mmengine writes a checkpoint straight under its final name, rewrites ``last_checkpoint`` in
    place, and with ``max_keep_ckpts`` deletes the oldest checkpoint before writing the new one:
    a process killed meanwhile can leave a truncated checkpoint, an empty ``last_checkpoint``,
    or (``max_keep_ckpts=1``) no checkpoint at all. Here, on local storage, every checkpoint is
    written to a temporary file and renamed (:class:`AtomicLocalBackend`); ``last_checkpoint``
    is renamed into place once the checkpoint is complete; outdated checkpoints are deleted last;
    and the temporary files of a killed run are deleted when training starts again.

    Storage given by ``backend_args``, ``file_client_args`` or a URI ``out_dir``
    (``s3://...``) is used as configured. Arguments: those of ``CheckpointHook``.
    """

    def __init__(self, **kwargs) -> None:
        storage_given = any(kwargs.get(key) is not None
                            for key in ('backend_args', 'file_client_args'))
        if not storage_given and '://' not in str(kwargs.get('out_dir') or ''):
            kwargs['backend_args'] = dict(backend='atomic_local')
        super().__init__(**kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, AtomicLocalBackend):
            for partial in glob.glob(osp.join(self.out_dir, '.*' + PARTIAL_SUFFIX)):
                runner.logger.info(f'Deleting {partial}, left by an interrupted save')
                os.remove(partial)

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated_steps = self._keep(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
            f.write(self.last_ckpt)
        for outdated_step in outdated_steps:
            self._remove_checkpoint(outdated_step)

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

    def _remove_checkpoint(self, step) -> None:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed saves directories
            self.file_backend.rmtree(path)
