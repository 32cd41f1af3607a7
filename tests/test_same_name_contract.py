"""Same name, same contract: a class we register under a name that mmdet (or mmcv, mmengine)
also registers replaces theirs for every config built in scope mmdeform, so it must take every
constructor argument of theirs with their default. The ancestors' registries are searched for
every name of ours, so that a new clash and a difference both fail here; a class that cannot keep
the contract takes a name of its own."""
import inspect

import pytest
from mmengine.registry import Registry

import mmdeform.registry as our_registries
from mmdeform.utils import register_all_modules

register_all_modules(init_default_scope=False)

# The classes of ours that keep the contract of the class of the same name above them.
KEPT = {
    ('TASK_UTILS', 'HungarianAssigner'), ('TASK_UTILS', 'FocalLossCost'),
    ('TASK_UTILS', 'BBoxL1Cost'), ('TASK_UTILS', 'IoUCost'),
    ('MODELS', 'SinePositionalEncoding'), ('TRANSFORMS', 'LoadImageFromFile'),
    ('MODELS', 'GIoULoss'), ('MODELS', 'DeformableDETR'), ('METRICS', 'CocoMetric'),
}
MISSING = 'missing'
ORDER_DIFFERS = 'their positional arguments are not the first of ours, in order'


def constructor(cls):
    """({argument: default (``inspect.Parameter.empty`` if none)}, [positional arguments in
    order]) of ``cls(...)``, following ``*args, **kwargs`` up the MRO to the constructor that
    takes them."""
    defaults, positional = {}, []
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        parameters = list(inspect.signature(vars(klass)['__init__']).parameters.values())[1:]
        takes_args = any(p.kind is p.VAR_POSITIONAL for p in parameters)
        for p in parameters:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                defaults.setdefault(p.name, p.default)
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in positional:
                positional.append(p.name)
        if all(p.kind is not p.VAR_KEYWORD for p in parameters):
            return defaults, positional
        if not takes_args:  # the positional arguments end here
            positional.append('**')
    return defaults, positional


def same_named():
    """(registry name, class name, ours, theirs) for each of our names an ancestor registers."""
    found = []
    for registry_name, registry in vars(our_registries).items():
        if not isinstance(registry, Registry) or registry.scope != our_registries.SCOPE:
            continue
        for name, ours in registry.module_dict.items():
            ancestor = registry.parent
            while ancestor is not None and name not in ancestor.module_dict:
                ancestor = ancestor.parent
            if ancestor is not None:
                found.append((registry_name, name, ours, ancestor.module_dict[name]))
    return found


def differences(ours, theirs):
    (our_defaults, our_positional), (their_defaults, their_positional) = map(
        constructor, (ours, theirs))
    found = {name: (our_defaults.get(name, MISSING), default)
             for name, default in their_defaults.items()
             if our_defaults.get(name, MISSING) != default}
    their_positional = their_positional[:their_positional.index('**')] \
        if '**' in their_positional else their_positional
    if our_positional[:len(their_positional)] != their_positional:
        found['positional order'] = ORDER_DIFFERS
    return found


def test_every_same_named_class_is_audited():
    assert {(registry, name) for registry, name, *_ in same_named()} == KEPT


@pytest.mark.parametrize('registry, name, ours, theirs', same_named(),
                         ids=[f'{r}.{n}' for r, n, *_ in same_named()])
def test_constructor_takes_theirs_with_their_defaults(registry, name, ours, theirs):
    assert differences(ours, theirs) == {}
