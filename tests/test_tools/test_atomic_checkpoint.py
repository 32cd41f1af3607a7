"""Atomic saving: a write that fails or is killed midway leaves the file under its final name as
it was; AtomicCheckpointHook keeps a loadable checkpoint and a valid last_checkpoint, and saves
every `interval_minutes`, keeping the newest timed checkpoint while it is the newest."""
import os
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from tools_toy_modules import SimulatedCrash, read_train_records, toy_runner_cfg

from mmdeform.engine import AtomicCheckpointHook  # registers the hooks and atomic_local
from mmdeform.engine.hooks import atomic_checkpoint_hook
from mmdeform.utils import atomic_write, load_checkpoint_file, save_checkpoint_file


def _partial_files(folder):
    return [name for name in os.listdir(folder) if name.endswith('.partial')]


def test_atomic_write_replaces_whole_file_with_usual_permissions(tmp_path):
    path = tmp_path / 'file.txt'
    path.write_text('old')
    with atomic_write(path, 'w') as f:
        f.write('new')
        assert path.read_text() == 'old'  # nothing visible before the end
    assert path.read_text() == 'new'
    assert not _partial_files(tmp_path)
    plain = tmp_path / 'plain.txt'
    plain.write_text('')  # open()'s permissions, under the same umask
    assert path.stat().st_mode == plain.stat().st_mode


def test_failed_save_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / 'model.pth'
    save_checkpoint_file(dict(weight=torch.ones(3)), path)
    # pickling fails midway, at the lambda
    with pytest.raises(Exception, match='lambda'):
        save_checkpoint_file(dict(weight=torch.zeros(1000), hook=lambda: None), path)
    assert torch.equal(load_checkpoint_file(path)['weight'], torch.ones(3))
    assert not _partial_files(tmp_path)


def test_atomic_write_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', not 'a'"):
        with atomic_write(tmp_path / 'file', 'a'):
            pass


def test_killed_writer_leaves_previous_file(tmp_path):
    path = tmp_path / 'model.pth'
    path.write_bytes(b'complete')
    writer = ('import sys, time\n'
              'from mmdeform.utils import atomic_write\n'
              f'with atomic_write({str(path)!r}) as f:\n'
              '    f.write(b"half of a new checkpoint"); f.flush()\n'
              '    print("writing", flush=True); time.sleep(600)\n')
    process = subprocess.Popen([sys.executable, '-c', writer], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == 'writing\n'
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    assert path.read_bytes() == b'complete'
    assert len(_partial_files(tmp_path)) == 1  # the killed write's, deleted by the next run


@pytest.mark.parametrize('kwargs, backend_args', [
    (dict(interval=1), dict(backend='atomic_local')),
    (dict(interval=1, out_dir='checkpoints'), dict(backend='atomic_local')),
    (dict(interval=1, out_dir='s3://bucket/checkpoints'), None),
    (dict(interval=1, backend_args=dict(backend='local')), dict(backend='local')),
])
def test_local_storage_is_atomic_unless_configured(kwargs, backend_args):
    assert AtomicCheckpointHook(**kwargs).backend_args == backend_args


def _toy_cfg(work_dir, **kwargs):
    cfg = toy_runner_cfg(work_dir, **kwargs)
    cfg['default_hooks']['checkpoint'] = dict(type='AtomicCheckpointHook', interval=1,
                                              max_keep_ckpts=1)
    return cfg


def test_failed_save_keeps_last_checkpoint_and_pointer(tmp_path, monkeypatch):
    Runner(**_toy_cfg(tmp_path, max_epochs=1)).train()
    first = load_checkpoint_file(tmp_path / 'epoch_1.pth')
    (tmp_path / '.epoch_7.pth.0123.partial').write_bytes(b'left by a killed save')

    def fail(fd):
        raise OSError('disk full')

    # The epoch-2 save fails after its data is written: mmengine's hook would already have
    # deleted epoch_1.pth (max_keep_ckpts=1) and its write would have truncated epoch_2.pth.
    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='disk full'):
        Runner(**_toy_cfg(tmp_path, max_epochs=2, resume=True)).train()
    assert not (tmp_path / 'epoch_2.pth').exists()
    kept = load_checkpoint_file(tmp_path / 'epoch_1.pth')
    assert torch.equal(kept['state_dict']['linear.weight'], first['state_dict']['linear.weight'])
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert not _partial_files(tmp_path)  # the leftover deleted at the start, the failed one at once

    monkeypatch.undo()
    Runner(**_toy_cfg(tmp_path, max_epochs=2, resume=True)).train()
    assert load_checkpoint_file(tmp_path / 'epoch_2.pth')['meta']['epoch'] == 2
    assert not (tmp_path / 'epoch_1.pth').exists()  # outdated once epoch 2 was saved
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_2.pth')


class _FakeClock:
    """``time`` for AtomicCheckpointHook: a monotonic clock that ``Minute`` advances."""

    def __init__(self):
        self.seconds = 0.0

    def monotonic(self):
        return self.seconds


class _Minute(Hook):
    """Each training iteration takes a minute of the fake clock (before the checkpoint hook)."""

    def __init__(self, clock):
        self.clock = clock

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.clock.seconds += 60


def _timed_cfg(work_dir, clock, max_epochs=2, **kwargs):
    cfg = toy_runner_cfg(work_dir, max_epochs=max_epochs, **kwargs)  # 4 iterations an epoch
    cfg['default_hooks']['checkpoint'] = dict(type='AtomicCheckpointHook', interval=1,
                                              interval_minutes=2.5)
    cfg['custom_hooks'] = [_Minute(clock), dict(type='TrainRecordHook')]
    return cfg


def _checkpoints(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith('.pth'))


def test_timed_checkpoints_every_interval_minutes(tmp_path, monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(atomic_checkpoint_hook, 'time', clock)
    crashing = _timed_cfg(tmp_path, clock)
    crashing['custom_hooks'].append(dict(type='InterruptHook', after_iter=7))
    with pytest.raises(SimulatedCrash):
        Runner(**crashing).train()
    # Minute 3 (iteration 3): a timed save; iteration 4 ends the epoch, whose save restarts the
    # count and deletes timed_iter_3; minute 3 after it is iteration 7.
    assert [save['saved_iter'] for save in read_train_records(tmp_path)[1]] == [3, 4, 7]
    assert _checkpoints(tmp_path) == ['epoch_1.pth', 'timed_iter_7.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'timed_iter_7.pth')
    assert load_checkpoint_file(tmp_path / 'timed_iter_7.pth')['meta']['iter'] == 7

    # Resumed (without ExactResumeHook, epoch 2 again from its first batch: iterations 8-11):
    # timed_iter_10 replaces timed_iter_7, and is deleted when epoch_2.pth is saved.
    Runner(**_timed_cfg(tmp_path, clock, resume=True)).train()
    assert [save['saved_iter'] for save in read_train_records(tmp_path)[1]][3:] == [10, 11]
    assert _checkpoints(tmp_path) == ['epoch_1.pth', 'epoch_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_2.pth')


def test_newer_timed_checkpoint_replaces_the_previous(tmp_path, monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(atomic_checkpoint_hook, 'time', clock)
    cfg = _timed_cfg(tmp_path, clock, max_epochs=1, num_samples=16)  # 8 iterations
    cfg['custom_hooks'].append(dict(type='InterruptHook', after_iter=6))
    with pytest.raises(SimulatedCrash):
        Runner(**cfg).train()
    assert [save['saved_iter'] for save in read_train_records(tmp_path)[1]] == [3, 6]
    assert _checkpoints(tmp_path) == ['timed_iter_6.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'timed_iter_6.pth')


@pytest.mark.parametrize('minutes', [0, -1])
def test_interval_minutes_must_be_positive(minutes):
    with pytest.raises(ValueError, match=f'interval_minutes must be a positive number of '
                                         f'minutes or None, not {minutes}'):
        AtomicCheckpointHook(interval=1, interval_minutes=minutes)
