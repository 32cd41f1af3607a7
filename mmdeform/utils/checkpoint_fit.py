"""Whether a checkpoint fits a config: its model, and the classes of its test dataset; and
which of our configs (configs/) the checkpoint fits.

A checkpoint fits a model when it has the same tensors (names and shapes) and shares them alike:
the model of a config without box refinement has one class branch and one box branch under six
names each, which a checkpoint trained with box refinement holds as six different tensors (and
loading them would keep the last). Every tool that evaluates, runs or exports a checkpoint checks
this (:func:`check_checkpoint_fits`) before using it: mmengine's Runner would load what fits and
carry on with the rest left as initialised.
"""
import functools
import glob
import os.path as osp
import re
from dataclasses import dataclass

import torch
from mmengine.registry import DefaultScope

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
# how many names each problem lists
EXAMPLES = 3


@dataclass(frozen=True)
class Layout:
    """The tensors of a model or checkpoint: ``shapes`` by name, and the groups of names that
    are one tensor (``shared``, groups of two or more)."""
    shapes: dict
    shared: frozenset


def model_layout(model):
    """The :class:`Layout` of ``model``'s state dict (shared tensors are one Parameter)."""
    tensors = model.state_dict(keep_vars=True)
    return Layout({key: tuple(tensor.shape) for key, tensor in tensors.items()},
                  _groups(tensors, id))


def checkpoint_state_dict(checkpoint):
    """The state dict of a loaded checkpoint as mmengine's Runner loads it: the one under
    ``state_dict`` if there is one, with the ``module.`` prefix of a wrapped model removed."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', key): value for key, value in state_dict.items()}


def layout_problems(state_dict, layout):
    """What keeps the tensors of ``state_dict`` from loading into a model of ``layout``: a list
    of sentences, empty where they fit."""
    missing = [key for key in layout.shapes if key not in state_dict]
    unexpected = [key for key in state_dict if key not in layout.shapes]
    reshaped = [f'{key} {tuple(state_dict[key].shape)} in the checkpoint, '
                f'{layout.shapes[key]} in the model' for key in layout.shapes
                if key in state_dict and tuple(state_dict[key].shape) != layout.shapes[key]]
    problems = [_listed(f'{len(missing)} tensor(s) of the model are not in the checkpoint',
                        missing),
                _listed(f'{len(unexpected)} tensor(s) of the checkpoint are not in the model',
                        unexpected),
                _listed(f'{len(reshaped)} tensor(s) have another shape', reshaped)]
    problems = [problem for problem in problems if problem]
    if problems:
        return problems
    differ = sorted(sorted(group) for group in layout.shared
                    if not all(torch.equal(state_dict[key], state_dict[min(group)])
                               for key in group))
    separate = sorted(sorted(group) for group in _groups(state_dict, _storage)
                      if not any(group <= shared for shared in layout.shared))
    return [problem for problem in (
        _listed(f'{len(differ)} group(s) of tensors are one tensor in the model, but different '
                f'tensors in the checkpoint', differ),
        _listed(f'{len(separate)} group(s) of tensors are one tensor in the checkpoint, but '
                f'separate tensors in the model', separate)) if problem]


def check_checkpoint_fits(checkpoint, model, checkpoint_name, config_name):
    """Raises a ValueError where the loaded ``checkpoint`` does not fit ``model``, built from
    the config ``config_name`` (None: a config not read from a file): the message names the
    missing, unexpected, reshaped and differently shared tensors (a few of each, and how many),
    and the configs of configs/ that the checkpoint fits, if any."""
    state_dict = checkpoint_state_dict(checkpoint)
    problems = layout_problems(state_dict, model_layout(model))
    if problems:
        config = 'its config' if config_name is None else f'the config {config_name}'
        raise ValueError(f'checkpoint {checkpoint_name} does not fit the model of {config}:\n'
                         + ''.join(f'- {problem}\n' for problem in problems)
                         + _fitting_configs_sentence(state_dict))


def check_classes_fit(checkpoint, classes, checkpoint_name, config_name):
    """Raises a ValueError where the loaded ``checkpoint`` was trained with other ``classes``
    (or the same in another order) than the config ``config_name`` evaluates: each label would
    be evaluated as another class."""
    saved = saved_dataset_meta(checkpoint).get('classes')
    if saved is not None and classes is not None and list(saved) != list(classes):
        raise ValueError(
            f'checkpoint {checkpoint_name} was trained with the classes {list(saved)} (the '
            f'order of its labels), but the test dataset of the config {config_name} has '
            f'{list(classes)}: set its metainfo=dict(classes=...) to the checkpoint\'s.')


def check_checkpoint_file_fits(path, cfg):
    """:func:`check_checkpoint_fits` and :func:`check_classes_fit` of the checkpoint ``path``
    and the config ``cfg`` (its model built without memory): for tools that hand both to
    mmengine's Runner. A URL (``https://``, ``torchvision://``, ...) is fetched by mmengine,
    which keeps what it downloads in torch's hub cache, where the Runner finds it again."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from .checkpoint import load_checkpoint_file
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu') if '://' in path \
        else load_checkpoint_file(path)
    check_checkpoint_fits(checkpoint, build_on_meta(cfg), path, cfg.filename)
    check_classes_fit(checkpoint, metainfo_of_test_dataset(cfg).get('classes'), path,
                      cfg.filename)


def saved_dataset_meta(checkpoint):
    """The metainfo of the dataset a loaded checkpoint was trained on (``meta.dataset_meta``;
    {} without), keys lower-cased as mmdet's init_detector does (some writers use CLASSES,
    PALETTE)."""
    saved = (checkpoint.get('meta') or {}).get('dataset_meta') or {}
    return {key.lower(): value for key, value in saved.items()}


def metainfo_of_test_dataset(cfg):
    """The metainfo (classes, palette) of the config's test dataset, read without loading its
    annotations."""
    return dict(test_dataset(cfg).metainfo)


def test_dataset(cfg):
    """The config's test dataset, built without loading its annotations."""
    from mmdeform.registry import DATASETS
    if 'test_dataloader' not in cfg:
        raise ValueError(f'the config {cfg.filename} has no test_dataloader: inference needs its '
                         'test pipeline and class names')
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdeform')):
        return DATASETS.build(dict(cfg.test_dataloader.dataset, lazy_init=True))


def build_on_meta(cfg):
    """``cfg.model`` built without memory or initialisation (on the meta device) where the
    model allows it, else on the CPU (Swin's __init__ reads a tensor)."""
    from mmdeform.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdeform')):
        try:
            with torch.device('meta'):
                return MODELS.build(cfg.model)
        except (RuntimeError, NotImplementedError):
            return MODELS.build(cfg.model)


def fitting_configs(state_dict):
    """The configs of configs/ (not their _base_) that ``state_dict`` fits, relative to the
    repository."""
    return [osp.relpath(path, osp.dirname(CONFIGS)) for path in _our_configs()
            if not layout_problems(state_dict, _config_layout(path))]


def _fitting_configs_sentence(state_dict):
    configs = fitting_configs(state_dict)
    if configs:
        return f'The checkpoint fits {", ".join(configs)}.'
    return f'It fits none of the configs under {CONFIGS} either.'


def _our_configs():
    return sorted(path for path in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
                  if '_base_' not in osp.relpath(path, CONFIGS).split(osp.sep))


@functools.lru_cache(maxsize=None)
def _config_layout(path):
    from mmengine.config import Config
    return model_layout(build_on_meta(Config.fromfile(path)))


def _groups(tensors, identity):
    """The groups (frozensets of two or more names) of ``tensors`` with the same ``identity``."""
    by_identity = {}
    for key, tensor in tensors.items():
        if tensor.numel():  # empty tensors may share a null storage without being one
            by_identity.setdefault(identity(tensor), set()).add(key)
    return frozenset(frozenset(keys) for keys in by_identity.values() if len(keys) > 1)


def _storage(tensor):
    """What makes two loaded tensors one: the same memory, viewed alike."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tensor.stride())


def _listed(what, items):
    """``what: item; item; item; ...`` (the first few items), or '' without items."""
    if not items:
        return ''
    more = '; ...' if len(items) > EXAMPLES else ''
    return f'{what}: {"; ".join(map(str, items[:EXAMPLES]))}{more}'
