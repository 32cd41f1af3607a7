from functools import partial
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict

from mmdeform.registry import HOOKS


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Skip the optimizer step of an iteration whose loss or gradients are not finite; stop the
    training after ``max_consecutive`` such iterations in a row.

    One NaN step writes NaN into every weight (and into Adam's moments), so a rare bad batch
    would end the run. The hook guards ``update_params`` of the runner's optim wrapper, whatever
    its type (``OptimWrapper``, ``CpuAmpOptimWrapper``, ``AmpOptimWrapper``), so one line of
    ``default_hooks`` covers every config and ``--amp``. The backward pass always runs (DDP's
    gradient all-reduce must happen in every process); then, if the loss of any process or the
    gradients are not finite, the gradients are zeroed instead of taking the step, and a warning
    names the iteration. Every process takes the same decision: the loss flag is all-reduced and
    the gradients are already. Under ``AmpOptimWrapper`` only the loss is checked: its loss
    scaler skips the steps whose scaled gradients overflow, routinely while it tunes the scale.
    With gradient accumulation, a skipped step drops the accumulated gradients.

    Args:
        max_consecutive (int): Non-finite iterations in a row that stop the training with a
            ``RuntimeError``. Defaults to 10.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise ValueError(f'max_consecutive must be at least 1, not {max_consecutive}')
        self.max_consecutive = max_consecutive

    def before_train(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        if isinstance(optim_wrapper, OptimWrapperDict) \
                or not isinstance(optim_wrapper, OptimWrapper):
            raise TypeError(f'{type(self).__name__} guards one OptimWrapper, not '
                            f'{type(optim_wrapper).__name__}')
        self._consecutive = 0
        # An instance attribute shadows the class's method, whichever class it is.
        optim_wrapper.update_params = partial(self._update_params, runner, optim_wrapper)

    def _update_params(self, runner, optim_wrapper: OptimWrapper, loss: torch.Tensor,
                       step_kwargs: Optional[dict] = None,
                       zero_kwargs: Optional[dict] = None) -> None:
        """``OptimWrapper.update_params``, the step replaced by a skip when not finite."""
        optim_wrapper.backward(optim_wrapper.scale_loss(loss))
        if not optim_wrapper.should_update():
            return
        if self._is_finite(optim_wrapper, loss):
            self._consecutive = 0
            optim_wrapper.step(**(step_kwargs or {}))
        else:
            self._skip(runner, loss)
        optim_wrapper.zero_grad(**(zero_kwargs or {}))

    @staticmethod
    def _is_finite(optim_wrapper: OptimWrapper, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).all().float()
        if get_world_size() > 1:
            all_reduce(finite, op='min')
        if not isinstance(optim_wrapper, AmpOptimWrapper):
            grads = [param.grad for group in optim_wrapper.param_groups
                     for param in group['params'] if param.grad is not None]
            if grads:
                finite = finite * torch.isfinite(torch.nn.utils.get_total_norm(grads))
        return bool(finite)

    def _skip(self, runner, loss: torch.Tensor) -> None:
        self._consecutive += 1
        iteration = runner.iter + 1  # as the log counts
        runner.logger.warning(
            f'Iteration {iteration}: non-finite loss (here {loss.item()}) or gradients; '
            f'skipped the optimizer step and zeroed the gradients ({self._consecutive} in a row, '
            f'training stops at {self.max_consecutive})')
        if self._consecutive >= self.max_consecutive:
            raise RuntimeError(
                f'Training stopped at iteration {iteration}: the loss or the gradients were not '
                f'finite in {self._consecutive} consecutive iterations. Look for bad annotations '
                'or a diverging model (learning rate, gradient clipping), then resume from the '
                'last checkpoint.')
