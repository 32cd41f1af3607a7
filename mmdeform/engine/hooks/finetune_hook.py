"""Fine-tuning: train from a checkpoint of other classes (configs/finetune/)."""
import logging
import re
from dataclasses import dataclass, field

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import BaseOptimWrapper

from mmdeform.models.detectors import first_stage_branch
from mmdeform.registry import HOOKS


@HOOKS.register_module()
class FinetuneHook(Hook):
    """Starts a training from ``load_from``, a checkpoint of other classes.

    mmengine loads ``load_from`` into the initialised model non-strictly: a tensor of another
    shape (the class branches of other classes) or missing on either side is skipped, and the
    model's keeps its initialisation (for the class branches, the prior -log((1 - 0.01) / 0.01)
    of a new training). Between reading the checkpoint and loading it (``after_load_checkpoint``)
    this hook adds what is particular to Deformable DETR:

    - in a two-stage model started from a two-stage checkpoint, the first stage's class branch
      gets the checkpoint's row 0 (``keep_objectness``): the first stage is trained
      class-agnostic, so row 0 is the objectness that picks the proposals, as good for any
      classes; its other rows only ever saw negatives and keep their initialisation;
    - one log line names every tensor not loaded as it is, and why. :attr:`report` holds them.

    It acts only when a training starts from ``load_from``; testing and resuming load the
    checkpoint as it is.

    Args:
        reinit (Sequence[str]): name prefixes of the tensors that score classes.
        keep_objectness (bool): keep the two-stage objectness row. Default True.
    """

    # before EMAHook, which copies the checkpoint into the averaged model
    priority = 'VERY_HIGH'

    def __init__(self, reinit=('bbox_head.cls_branches.', ), keep_objectness=True):
        self.reinit = tuple(reinit)
        self.keep_objectness = keep_objectness
        self.report = FinetuneReport()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not starts_training_from_load_from(runner):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model_state = model.state_dict()
        state_dict = checkpoint.get('state_dict', checkpoint)
        objectness = objectness_tensors(model_state) if self.keep_objectness else ()
        prepared, self.report = finetune_state_dict(model_state, state_dict, self.reinit,
                                                    objectness)
        state_dict.clear()  # in place: mmengine loads this dict, with its _metadata
        state_dict.update(prepared)
        self.report.log(runner.cfg.get('load_from'))


def starts_training_from_load_from(runner):
    """Whether the runner loads ``load_from`` to train from it: ``Runner.train`` builds the
    optimizer before loading, ``test`` and ``val`` build none; resuming loads through
    ``Runner.resume``, which the runner's resume flag selects."""
    return isinstance(runner.optim_wrapper, BaseOptimWrapper) and not runner._resume


def objectness_tensors(model_state):
    """The names of the first stage's class branch of a two-stage Deformable DETR, whose row 0
    ranks the proposals; none for other models."""
    branch = first_stage_branch(model_state)
    if branch is None:
        return ()
    return tuple(f'bbox_head.cls_branches.{branch}.{param}' for param in ('weight', 'bias'))


@dataclass
class FinetuneReport:
    """What :func:`finetune_state_dict` found of each tensor, by name."""
    loaded: list = field(default_factory=list)
    reinitialised: dict = field(default_factory=dict)  # name: why
    objectness_kept: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # checkpoint name: why
    not_in_checkpoint: list = field(default_factory=list)

    def log(self, source):
        """One line: how many tensors loaded, and each one not loaded as it is, and why."""
        why = {**{name: f'{shapes}: initialised as for a new training, class prior 0.01'
                  for name, shapes in self.reinitialised.items()},
               **{name: 'row 0 loaded, the two-stage objectness; the other rows initialised'
                  for name in self.objectness_kept},
               **self.skipped,
               **{name: 'not in the checkpoint: left as initialised'
                  for name in self.not_in_checkpoint}}
        message = f'Fine-tuning: {len(self.loaded)} tensors of {source} loaded as they are'
        if why:
            message += '; not loaded as they are: ' + ', '.join(
                f'{name} ({reason})' for name, reason in why.items())
        unexpected = self.skipped or self.not_in_checkpoint
        print_log(message, logger='current',
                  level=logging.WARNING if unexpected else logging.INFO)


def finetune_state_dict(model_state, checkpoint_state, reinit=('bbox_head.cls_branches.', ),
                        objectness=()):
    """The checkpoint's ``checkpoint_state`` for mmengine to load into a model of state
    ``model_state`` (initialised), with the ``objectness`` tensors' row 0 from a two-stage
    checkpoint and their other rows from the model, and a :class:`FinetuneReport`. Its names are
    the model's: ``module.`` prefixes are dropped, as mmengine's ``load_from`` does."""
    prepared = {re.sub(r'^module\.', '', name): tensor
                for name, tensor in checkpoint_state.items()}
    report = FinetuneReport()
    two_stage_checkpoint = first_stage_branch(prepared) is not None
    for name, own in model_state.items():
        theirs = prepared.get(name)
        if theirs is None:
            report.not_in_checkpoint.append(name)
        elif theirs.shape == own.shape:
            report.loaded.append(name)
        elif name in objectness and two_stage_checkpoint and theirs.shape[1:] == own.shape[1:]:
            report.objectness_kept.append(name)
            prepared[name] = torch.cat([theirs[:1].to(own.dtype), own[1:]])
        elif name.startswith(reinit):
            report.reinitialised[name] = _shapes(theirs, own)
        else:
            report.skipped[name] = _shapes(theirs, own)
    for name in prepared.keys() - model_state.keys():
        report.skipped[name] = 'not in the model'
    report.skipped = dict(sorted(report.skipped.items()))
    return prepared, report


def _shapes(theirs, own):
    return f'{tuple(theirs.shape)} in the checkpoint, {tuple(own.shape)} here'
