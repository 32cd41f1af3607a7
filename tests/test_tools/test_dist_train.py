"""tools/dist_train.sh trains with 2 processes through torchrun: on CPU with gloo. Each process
draws its own random numbers, and a resumed 2-process run continues exactly."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from tools_toy_modules import (assert_same_iterations, dropout_mask, read_train_records,
                               run_until_killed)

from mmdeform.utils import load_checkpoint_file

TOOLS_TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(TOOLS_TESTS))
# 8 images, 2 processes, batches of 2: 2 iterations an epoch in each process
ITERATIONS = [1, 2, 3, 4]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _dist_env(interrupt_after_iter=''):
    return dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
                INTERRUPT_AFTER_ITER=interrupt_after_iter,
                PYTHONPATH=os.pathsep.join([TOOLS_TESTS, os.environ.get('PYTHONPATH', '')]))


def _dist_train_command(work_dir, data_root, *options, cfg_options=()):
    """2 epochs of the tiny detector in 2 processes, seeded and deterministic; every image
    resized to 64x64 so that both processes' dropout masks have the same shape."""
    return ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'),
            osp.join(TOOLS_TESTS, 'tiny_detr_config.py'), '2', '--work-dir', str(work_dir),
            '--seed', '0', '--deterministic', *options, '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}',
            'train_dataloader.dataset.pipeline.3.keep_ratio=False', *cfg_options]


def _dist_train(work_dir, data_root, *options, cfg_options=(), returncode=0,
                interrupt_after_iter=''):
    result = subprocess.run(
        _dist_train_command(work_dir, data_root, *options, cfg_options=cfg_options),
        env=_dist_env(interrupt_after_iter), capture_output=True, text=True, timeout=600)
    assert result.returncode == returncode, result.stderr[-3000:]
    return result


@pytest.fixture(scope='module')
def reference(tiny_coco, tmp_path_factory):
    """An uninterrupted 2-process run: its output and both processes' records."""
    work_dir = tmp_path_factory.mktemp('reference')
    result = _dist_train(work_dir, tiny_coco)
    return work_dir, result.stdout + result.stderr, [read_train_records(work_dir, rank)
                                                      for rank in (0, 1)]


def test_two_processes_share_the_data_and_save_once(reference):
    work_dir, output, ((iterations0, saves0), (iterations1, saves1)) = reference
    if not torch.cuda.is_available():
        assert 'using the gloo backend' in output
    assert sorted(iterations0) == sorted(iterations1) == ITERATIONS
    for epoch in (0, 1):  # in each epoch the two processes train on different images
        epoch_iterations = ITERATIONS[2 * epoch:2 * epoch + 2]
        images = [i for records in (iterations0, iterations1) for iteration in epoch_iterations
                  for i in records[iteration]['img_ids']]
        assert sorted(images) == list(range(1, 9))
    # each save by rank 0 alone
    assert saves0 == [dict(saved_iter=2, rank=0), dict(saved_iter=4, rank=0)] and saves1 == []
    assert sorted(name for name in os.listdir(work_dir) if name.endswith('.pth')) == \
        ['epoch_1.pth', 'epoch_2.pth']
    assert not [name for name in os.listdir(work_dir) if name.endswith('.partial')]


def test_each_process_draws_its_own_dropout_masks(reference):
    """The seed of each iteration includes the rank: one seed for all processes would give
    them the same masks (and augmentations drawn in the main process)."""
    _, _, ((iterations0, _), (iterations1, _)) = reference
    for iteration in ITERATIONS:
        records = iterations0[iteration], iterations1[iteration]
        assert records[0]['dropout']['shape'] == records[1]['dropout']['shape']
        (dropped0, kept0), (dropped1, kept1) = (dropout_mask(record) for record in records)
        for dropped, kept in ((dropped0, kept0), (dropped1, kept1)):
            assert 0.05 < dropped.sum() / (dropped | kept).sum() < 0.15  # p = 0.1
        # Where both masks are known, independent ones with p = 0.1 differ at ~18% of the
        # elements (identical ones at none).
        both = (dropped0 | kept0) & (dropped1 | kept1)
        assert both.sum() > 1000
        assert 0.1 < (dropped0 != dropped1)[both].mean() < 0.26, iteration


def test_two_process_resume_continues_exactly(reference, tiny_coco, tmp_path):
    """Interrupted after iteration 3 (the epoch-1 checkpoint is the last), then resumed: both
    processes repeat iteration 3 and train 4 as the uninterrupted run did, bit for bit."""
    reference_dir, _, reference_records = reference
    _dist_train(tmp_path, tiny_coco, interrupt_after_iter='3', returncode=1)
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    _dist_train(tmp_path, tiny_coco, '--resume')
    for rank in (0, 1):
        assert_same_iterations(read_train_records(tmp_path, rank)[0],
                               reference_records[rank][0], ITERATIONS)
    state, reference_state = (load_checkpoint_file(path / 'epoch_2.pth')['state_dict']
                              for path in (tmp_path, reference_dir))
    assert all(torch.equal(state[name], weight) for name, weight in reference_state.items())


def test_two_process_sigkill_mid_epoch_then_resume_continues_exactly(reference, tiny_coco,
                                                                     tmp_path):
    """Timed checkpoints after every iteration (the first process decides when, for both);
    both processes killed after iteration 3, 1 batch into epoch 2, then resumed."""
    reference_dir, _, reference_records = reference
    every_iteration = ['default_hooks.checkpoint.interval_minutes=1e-9']
    run_until_killed(_dist_train_command(tmp_path, tiny_coco, cfg_options=every_iteration),
                     _dist_env('3,kill'), tmp_path, num_processes=2)
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'timed_iter_3.pth')
    # saved by the first process, after iterations 1, 2 (then the epoch's) and 3
    assert read_train_records(tmp_path, 0)[1] == [
        dict(saved_iter=i, rank=0) for i in (1, 2, 2, 3)]
    _dist_train(tmp_path, tiny_coco, '--resume')  # the saved config has every_iteration
    for rank in (0, 1):
        records = read_train_records(tmp_path, rank)[0]
        assert_same_iterations(records, reference_records[rank][0], ITERATIONS)
    state, reference_state = (load_checkpoint_file(path / 'epoch_2.pth')['state_dict']
                              for path in (tmp_path, reference_dir))
    assert all(torch.equal(state[name], weight) for name, weight in reference_state.items())
