"""Fine-tuning: start from a checkpoint trained on other classes, logging what is not loaded."""
import logging
import re
from dataclasses import dataclass, field

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdeform.registry import HOOKS


@HOOKS.register_module()
class FinetuneHook(Hook):
    """Loads ``load_from`` into a model of other classes: what transfers is loaded, the class
    branches are re-initialised, and every tensor that is not loaded is logged by name.

    mmengine initialises the model, then loads ``load_from``; between reading the checkpoint and
    loading it (``after_load_checkpoint``) this hook makes its state dict match the model:

    - a tensor under one of the ``reinit`` prefixes (the class branches) whose shape differs
      from the model's (another number of classes) keeps the model's initialisation, as for a
      training from scratch (the class branches' biases: the prior -log((1 - 0.01) / 0.01));
    - in a two-stage model started from a two-stage checkpoint, the first stage's class branch
      keeps the checkpoint's row 0 (``keep_objectness``): the first stage is trained
      class-agnostic, so row 0 is the objectness that picks the proposals, as good for any
      classes; its other rows only ever saw negatives and are re-initialised;
    - any other tensor of the checkpoint that the model lacks or has in another shape is
      skipped, and a tensor of the model that the checkpoint lacks keeps its initialisation:
      both are logged as warnings.

    Everything else (backbone, neck, transformer, box branches) is loaded as it is. A checkpoint
    of the model's own shapes (resuming, testing a fine-tuned checkpoint) loads unchanged. The
    tensors of each kind are in :attr:`report` once the checkpoint is loaded.

    Args:
        reinit (Sequence[str]): name prefixes of the tensors that score classes.
        keep_objectness (bool): keep the two-stage objectness row. Default True.
    """

    # before EMAHook, which copies the checkpoint into the averaged model
    priority = 'VERY_HIGH'

    def __init__(self, reinit=('bbox_head.cls_branches.', ), keep_objectness=True):
        self.reinit = tuple(reinit)
        self.keep_objectness = keep_objectness
        self.report = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state_dict = checkpoint.get('state_dict', checkpoint)
        objectness = objectness_tensors(model) if self.keep_objectness else ()
        prepared, self.report = finetune_state_dict(model.state_dict(), state_dict, self.reinit,
                                                    objectness)
        state_dict.clear()  # in place: mmengine loads this dict, with its _metadata
        state_dict.update(prepared)
        self.report.log()


def objectness_tensors(model):
    """The first stage's class branch of a two-stage Deformable DETR, whose row 0 ranks the
    proposals (the head's branch after the decoder layers'); none for other models."""
    if not getattr(model, 'as_two_stage', False):
        return ()
    prefix = f'bbox_head.cls_branches.{model.decoder.num_layers}.'
    return prefix + 'weight', prefix + 'bias'


@dataclass
class FinetuneReport:
    """What :func:`finetune_state_dict` did with each tensor, by name."""
    loaded: list = field(default_factory=list)
    reinitialised: dict = field(default_factory=dict)  # name: why
    objectness_kept: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # checkpoint name: why
    not_in_checkpoint: list = field(default_factory=list)

    def log(self):
        print_log(f'Fine-tuning: {len(self.loaded)} tensors of the checkpoint loaded as they are',
                  logger='current')
        if self.reinitialised:
            print_log('Fine-tuning: initialised as for a new training (class prior 0.01), not '
                      'loaded: ' + _listing(self.reinitialised), logger='current')
        if self.objectness_kept:
            print_log('Fine-tuning: row 0 (the two-stage objectness, class-agnostic) loaded, the '
                      'other rows initialised: ' + ', '.join(self.objectness_kept),
                      logger='current')
        if self.skipped:
            print_log('Fine-tuning: tensors of the checkpoint skipped: '
                      + _listing(self.skipped), logger='current', level=logging.WARNING)
        if self.not_in_checkpoint:
            print_log('Fine-tuning: not in the checkpoint, left as initialised: '
                      + ', '.join(self.not_in_checkpoint), logger='current', level=logging.WARNING)


def _listing(reasons):
    return ', '.join(f'{name} ({why})' for name, why in reasons.items())


def finetune_state_dict(model_state, checkpoint_state, reinit=('bbox_head.cls_branches.', ),
                        objectness=()):
    """The state dict to load into a model of state ``model_state`` (initialised) from a
    checkpoint's ``checkpoint_state``, with the rules of :class:`FinetuneHook`, and a
    :class:`FinetuneReport`. Its names are the model's; ``module.`` prefixes of the checkpoint
    are dropped, as mmengine does."""
    checkpoint_state = {re.sub(r'^module\.', '', name): tensor
                        for name, tensor in checkpoint_state.items()}
    report = FinetuneReport()
    # memory_trans_fc belongs to the first stage: the checkpoint's row 0 is objectness then
    two_stage_checkpoint = 'memory_trans_fc.weight' in checkpoint_state
    prepared = {}
    for name, own in model_state.items():
        theirs = checkpoint_state.get(name)
        if theirs is None:
            report.not_in_checkpoint.append(name)
            prepared[name] = own
        elif theirs.shape == own.shape:
            report.loaded.append(name)
            prepared[name] = theirs
        elif name in objectness and two_stage_checkpoint and theirs.shape[1:] == own.shape[1:]:
            report.objectness_kept.append(name)
            prepared[name] = torch.cat([theirs[:1].to(own.dtype), own[1:]])
        elif name.startswith(reinit):
            report.reinitialised[name] = _shapes(theirs, own)
            prepared[name] = own
        else:
            report.skipped[name] = _shapes(theirs, own)
            prepared[name] = own
    for name in checkpoint_state.keys() - model_state.keys():
        report.skipped[name] = 'not in the model'
    report.skipped = dict(sorted(report.skipped.items()))
    return prepared, report


def _shapes(theirs, own):
    return f'{tuple(theirs.shape)} in the checkpoint, {tuple(own.shape)} here'
