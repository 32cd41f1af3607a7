"""Training runs that can be trusted: an interrupted run (an exception, SIGKILL) resumed with
`tools/train.py --resume` ends bit-identical to an uninterrupted one, and two runs with the same
`--seed --deterministic` are bit-identical. The tiny Deformable DETR runs in subprocesses, so
`--deterministic` (process-wide) stays out of the other tests."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from tools_toy_modules import (SimulatedCrash, assert_same_iterations, dropout_mask,
                               read_train_records, run_until_killed, toy_runner_cfg)

import mmdeform.engine  # noqa: F401  (registers the hooks)
from mmdeform.utils import allow_mmengine_checkpoint_globals, load_checkpoint_file

TOOLS_TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(TOOLS_TESTS))
TINY_DETR = osp.join(TOOLS_TESTS, 'tiny_detr_config.py')
SEED = ['--seed', '5', '--deterministic']
ITERS_PER_EPOCH = 4  # 8 images, batches of 2


def _env(interrupt_after_iter=''):
    # one thread: runs compared bit for bit must split their reductions alike
    return dict(os.environ, OMP_NUM_THREADS='1', INTERRUPT_AFTER_ITER=interrupt_after_iter,
                PYTHONPATH=os.pathsep.join([TOOLS_TESTS, os.environ.get('PYTHONPATH', '')]))


def _train_command(work_dir, data_root, *options, cfg_options=()):
    return [sys.executable, osp.join(ROOT, 'tools', 'train.py'), TINY_DETR, '--work-dir',
            str(work_dir), *options, '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}', *cfg_options]


def _train(work_dir, data_root, *options, cfg_options=(), returncode=0,
           interrupt_after_iter=''):
    result = subprocess.run(_train_command(work_dir, data_root, *options,
                                           cfg_options=cfg_options),
                            env=_env(interrupt_after_iter), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == returncode, result.stderr[-3000:]
    return result


def _checkpoints(work_dir):
    return sorted(name for name in os.listdir(work_dir) if name.endswith('.pth'))


def _assert_same_weights(path, reference_path):
    state, reference = load_checkpoint_file(path), load_checkpoint_file(reference_path)
    assert state['meta']['iter'] == reference['meta']['iter']
    assert state['state_dict'].keys() == reference['state_dict'].keys()
    for name, weight in reference['state_dict'].items():
        assert torch.equal(state['state_dict'][name], weight), name
    for param_state, reference_state in zip(state['optimizer']['state'].values(),
                                            reference['optimizer']['state'].values()):
        assert all(torch.equal(param_state[key], value) for key, value in reference_state.items())


@pytest.fixture(scope='module')
def reference(tiny_coco, tmp_path_factory):
    """An uninterrupted run of 2 epochs (8 iterations)."""
    work_dir = tmp_path_factory.mktemp('reference')
    _train(work_dir, tiny_coco, *SEED)
    records, _ = read_train_records(work_dir)
    assert sorted(records) == list(range(1, 2 * ITERS_PER_EPOCH + 1))
    # the encoder's FFN dropout (p = 0.1) drew a mask in every iteration, each its own
    masks = [dropout_mask(record) for record in records.values()]
    assert all(0.05 < dropped.sum() / (dropped | kept).sum() < 0.15 for dropped, kept in masks)
    assert len({record['dropout']['dropped'] for record in records.values()}) == len(records)
    return work_dir, records


def test_resume_after_a_crash_continues_exactly(reference, tiny_coco, tmp_path):
    reference_dir, reference_records = reference
    _train(tmp_path, tiny_coco, *SEED, returncode=1, interrupt_after_iter='5')
    # the epoch-1 checkpoint (iteration 4) is the last; iteration 5 is lost
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')

    # --seed left out and --deterministic given again: the config saved in the work dir has both
    _train(tmp_path, tiny_coco, '--resume', '--deterministic')
    records, saves = read_train_records(tmp_path)
    assert_same_iterations(records, reference_records, range(1, 9))
    assert [save['saved_iter'] for save in saves] == [4, 8]
    _assert_same_weights(tmp_path / 'epoch_2.pth', reference_dir / 'epoch_2.pth')


def test_sigkill_then_resume_mid_epoch_continues_exactly(reference, tiny_coco, tmp_path):
    reference_dir, reference_records = reference
    # A timed checkpoint after every iteration; killed after iteration 6, 2 batches into epoch 2.
    # The data loaded (and randomly flipped) in 2 worker processes, the reference's in the main
    # process: each batch is loaded with its own seed wherever it is loaded.
    run_until_killed(_train_command(tmp_path, tiny_coco, *SEED, cfg_options=[
        'default_hooks.checkpoint.interval_minutes=1e-9', 'train_dataloader.num_workers=2']),
        _env('6,kill'), tmp_path)
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'timed_iter_6.pth')
    assert _checkpoints(tmp_path) == ['epoch_1.pth', 'timed_iter_6.pth']
    with open(tmp_path / 'train_record_rank0.jsonl') as f:
        records_before_resume = len(f.readlines())

    # The config saved in the work dir has the first command line's settings: given again,
    # they must agree with it; left out, they are kept.
    refused = _train(tmp_path, tiny_coco, '--resume', returncode=1,
                     cfg_options=['default_hooks.checkpoint.interval_minutes=5'])
    assert 'default_hooks.checkpoint.interval_minutes: 1e-09 in the saved config, 5 on the ' \
        'command line' in refused.stderr
    _train(tmp_path, tiny_coco, '--resume')
    with open(tmp_path / 'train_record_rank0.jsonl') as f:
        resumed_iterations = [line for line in f.readlines()[records_before_resume:]
                              if '"iter"' in line]
    assert len(resumed_iterations) == 2  # iterations 7 and 8 only: just the lost work again
    records, _ = read_train_records(tmp_path)
    assert_same_iterations(records, reference_records, range(1, 9))
    _assert_same_weights(tmp_path / 'epoch_2.pth', reference_dir / 'epoch_2.pth')
    assert _checkpoints(tmp_path) == ['epoch_1.pth', 'epoch_2.pth']
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.partial')]


def test_seeded_deterministic_runs_are_bit_identical(tiny_coco, tmp_path):
    # Data loading in a worker process, each batch seeded for its iteration: two runs at once.
    work_dirs = [tmp_path / 'first', tmp_path / 'second']
    processes = [
        subprocess.Popen(_train_command(work_dir, tiny_coco, *SEED,
                                        cfg_options=['train_cfg.max_epochs=1',
                                                     'train_dataloader.num_workers=1']),
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for work_dir in work_dirs
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    first, second = (read_train_records(work_dir)[0] for work_dir in work_dirs)
    assert_same_iterations(second, first, range(1, ITERS_PER_EPOCH + 1))
    _assert_same_weights(work_dirs[1] / 'epoch_1.pth', work_dirs[0] / 'epoch_1.pth')


def _toy_cfg(work_dir, exact_resume=True, checkpoint_interval=3, **kwargs):
    """The toy run: 2 epochs of 4 shuffled batches, a checkpoint every 3 iterations."""
    cfg = toy_runner_cfg(work_dir, max_epochs=2, num_samples=8, batch_size=2, **kwargs)
    cfg['train_dataloader']['sampler']['shuffle'] = True
    cfg['default_hooks'] = dict(checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False,
                                                interval=checkpoint_interval))
    if exact_resume:
        cfg['default_hooks']['exact_resume'] = dict(type='ExactResumeHook')
    cfg['custom_hooks'] = [dict(type='TrainRecordHook')]
    return cfg


def _toy_train(cfg, crash_after=None, from_config=True):
    """Train the toy run of ``cfg``, built from its config as tools/train.py does (or from
    keyword arguments); with ``crash_after``, interrupted after that iteration."""
    if crash_after is not None:
        cfg = dict(cfg, custom_hooks=[*cfg['custom_hooks'],
                                      dict(type='InterruptHook', after_iter=crash_after)])
    # mmengine loads a checkpoint to resume with torch's default weights_only
    allow_mmengine_checkpoint_globals()
    runner = Runner.from_cfg(Config(cfg)) if from_config else Runner(**cfg)
    if crash_after is None:
        runner.train()
        return
    with pytest.raises(SimulatedCrash):
        runner.train()


def _toy_reference(work_dir, **kwargs):
    _toy_train(_toy_cfg(work_dir, randomness=dict(seed=3), **kwargs))
    return read_train_records(work_dir)[0]


@pytest.mark.parametrize('exact_resume', [True, False])
def test_toy_mid_epoch_resume_needs_the_hook(exact_resume, tmp_path):
    reference = _toy_reference(tmp_path / 'reference')
    work_dir = tmp_path / 'resumed'
    _toy_train(_toy_cfg(work_dir, exact_resume, randomness=dict(seed=3)), crash_after=7)
    # a fresh seed: the sampler's must come from the checkpoint
    _toy_train(_toy_cfg(work_dir, exact_resume, resume=True))
    records = read_train_records(work_dir)[0]
    same = all(records.get(i, {}).get('loss') == reference[i]['loss'] for i in range(7, 9))
    # mmengine alone would repeat epoch 2 from its first batch, in another order
    assert same == exact_resume


def test_toy_second_interruption_in_a_resumed_epoch(tmp_path):
    """A checkpoint saved in the rest of an epoch keeps the sampler's seed too."""
    reference = _toy_reference(tmp_path / 'reference', checkpoint_interval=1)
    work_dir = tmp_path / 'resumed'
    _toy_train(_toy_cfg(work_dir, checkpoint_interval=1, randomness=dict(seed=3)),
               crash_after=6)
    _toy_train(_toy_cfg(work_dir, checkpoint_interval=1, resume=True), crash_after=7)
    _toy_train(_toy_cfg(work_dir, checkpoint_interval=1, resume=True))
    records = read_train_records(work_dir)[0]
    assert [records[i]['loss'] for i in range(1, 9)] == [reference[i]['loss']
                                                        for i in range(1, 9)]


def test_toy_runner_without_loader_config_warns_and_restarts_the_epoch(tmp_path):
    _toy_train(_toy_cfg(tmp_path, randomness=dict(seed=3)), crash_after=7)
    _toy_train(_toy_cfg(tmp_path, resume=True), from_config=False)
    records = read_train_records(tmp_path)[0]
    assert max(records) == 10  # iteration 6 was 2 batches into epoch 2, trained again
    logs = ''.join(path.read_text() for path in tmp_path.glob('*/*.log'))
    assert 'The config has no train_dataloader to rebuild the training loader from: a partly ' \
        'trained epoch starts from its first batch' in logs


def test_toy_iteration_based_resume_restores_the_order(tmp_path):
    """IterBasedTrainLoop draws its first indices when it is built, with the fresh seed."""

    def cfg(work_dir, **kwargs):
        cfg = _toy_cfg(work_dir, **kwargs)
        cfg['train_cfg'] = dict(by_epoch=False, max_iters=6, val_interval=100)
        cfg['train_dataloader']['num_workers'] = 1  # prefetches when the loop is built
        return cfg

    _toy_train(cfg(tmp_path / 'reference', randomness=dict(seed=3)))
    _toy_train(cfg(tmp_path / 'resumed', randomness=dict(seed=3)), crash_after=4)
    _toy_train(cfg(tmp_path / 'resumed', resume=True))
    reference, records = (read_train_records(tmp_path / name)[0]
                          for name in ('reference', 'resumed'))
    assert [records[i]['loss'] for i in range(4, 7)] == \
        [reference[i]['loss'] for i in range(4, 7)]
