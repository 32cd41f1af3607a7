"""NonFiniteLossHook: a non-finite step is skipped and logged, training goes on after isolated
ones and stops with a clear message after max_consecutive in a row."""
import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from tools_toy_modules import toy_runner_cfg

from mmdeform.engine import NonFiniteLossHook

WRAPPERS = [
    'OptimWrapper',
    'CpuAmpOptimWrapper',
    pytest.param('AmpOptimWrapper', marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason='mmengine AmpOptimWrapper needs CUDA')),
]


class _WeightsHook(Hook):
    """The weights after each iteration."""

    def __init__(self):
        self.weights = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights.append(runner.model.linear.weight.detach().clone())


def _train(work_dir, wrapper, nan_indices, max_consecutive=3):
    """4 iterations of batches (0, 1), (2, 3), (4, 5), (6, 7) of the toy data, with AdamW."""
    cfg = toy_runner_cfg(work_dir, max_epochs=1, num_samples=8, batch_size=2)
    cfg['train_dataloader']['dataset']['nan_indices'] = nan_indices
    cfg['optim_wrapper'] = dict(type=wrapper, optimizer=dict(type='AdamW', lr=0.1))
    cfg['default_hooks']['non_finite'] = dict(type='NonFiniteLossHook',
                                              max_consecutive=max_consecutive)
    weights = _WeightsHook()
    runner = Runner(**cfg, custom_hooks=[weights])
    try:
        runner.train()
    finally:
        with open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]) as f:
            log = f.read()
    return weights.weights, log


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_isolated_non_finite_step_is_skipped(wrapper, tmp_path):
    weights, log = _train(tmp_path, wrapper, nan_indices=[3])  # iteration 2
    assert len(weights) == 4  # the training went on
    assert torch.equal(weights[1], weights[0])  # no update from the NaN step
    assert not torch.equal(weights[2], weights[1]) and not torch.equal(weights[3], weights[2])
    assert all(torch.isfinite(w).all() for w in weights)
    assert 'Iteration 2: non-finite loss (here nan) or gradients; skipped the optimizer step' in log
    assert 'Iteration 3: non-finite' not in log


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_consecutive_non_finite_steps_stop_training(wrapper, tmp_path):
    with pytest.raises(RuntimeError, match='Training stopped at iteration 4: the loss or the '
                       'gradients were not finite in 3 consecutive iterations'):
        _train(tmp_path / 'stopped', wrapper, nan_indices=range(2, 8))
    # one finite step between non-finite ones resets the count
    weights, _ = _train(tmp_path / 'reset', wrapper, nan_indices=[2, 6], max_consecutive=2)
    assert len(weights) == 4


def test_non_finite_gradient_of_finite_loss_is_skipped():
    param = torch.nn.Parameter(torch.zeros(2))
    optim_wrapper = OptimWrapper(torch.optim.SGD([param], lr=1.0))
    runner = SimpleNamespace(optim_wrapper=optim_wrapper, iter=6,
                             logger=MMLogger.get_current_instance())
    NonFiniteLossHook(max_consecutive=2).before_train(runner)

    loss = torch.sqrt(param).sum()  # 0, with an infinite gradient
    optim_wrapper.update_params(loss)
    assert torch.equal(param.detach(), torch.zeros(2)) and param.grad is None
    optim_wrapper.update_params((param - 1).square().sum())
    assert torch.equal(param.detach(), torch.full((2, ), 2.0))


def test_bad_arguments():
    with pytest.raises(ValueError, match='max_consecutive must be at least 1, not 0'):
        NonFiniteLossHook(max_consecutive=0)
