"""Placeholders for mmcv's compiled op library (``mmcv._ext``) under mmcv-lite (docs/install.md).

mmdet imports ``mmcv.ops``, whose modules look their kernels up in ``mmcv._ext`` when imported.
Where that library is absent, :func:`install` (run by ``import mmdeform``) registers in its place
a module whose every attribute is a placeholder that raises :class:`MissingMmcvOpError`, naming
the op, when called: an mmcv kernel reached by mistake is an error, never a wrong result. Each
call is recorded in :data:`called_ops`, so that tests see it even where a caller catches the
error. With full mmcv nothing is replaced.
"""
import importlib.machinery
import importlib.util
import sys
import types

NAME = 'mmcv._ext'

#: The placeholders called so far in this process, by op name, in order.
called_ops = []


class MissingMmcvOpError(RuntimeError):
    """An mmcv op was called in an environment that has mmcv-lite, not full mmcv."""


def missing_op(op):

    def placeholder(*args, **kwargs):
        called_ops.append(op)
        raise MissingMmcvOpError(
            f"mmcv's compiled op '{op}' was called, but this environment has mmcv-lite, which "
            "has none of mmcv's compiled ops (mmdeform needs none). Modules built on them (a DCN "
            "backbone, mmcv's nms) need full mmcv: to install full mmcv, see 'Full mmcv' in "
            "docs/install.md.")

    placeholder.__name__ = placeholder.__qualname__ = op
    return placeholder


class PlaceholderLibrary(types.ModuleType):
    """``mmcv._ext`` stand-in: any op name resolves to a placeholder."""

    def __getattr__(self, op):
        if op.startswith('__'):
            raise AttributeError(op)
        placeholder = missing_op(op)
        setattr(self, op, placeholder)
        return placeholder


def placeholders_in_use():
    """Whether ``mmcv._ext`` is this module's stand-in (mmcv-lite), not mmcv's library."""
    return isinstance(sys.modules.get(NAME), PlaceholderLibrary)


def _mmcv_library_found():
    try:
        return importlib.util.find_spec(NAME) is not None
    except ModuleNotFoundError:  # no mmcv at all
        return False


def install():
    """Registers the placeholder library unless ``mmcv._ext`` is imported or found (full mmcv).

    Returns:
        bool: whether the placeholders are in use.
    """
    if NAME not in sys.modules and not _mmcv_library_found():
        library = PlaceholderLibrary(NAME, __doc__)
        # A spec without a loader: importlib and pkgutil find the module, and mmengine's
        # mmcv_full_available() (a pkgutil loader lookup) answers False, as it should.
        library.__spec__ = importlib.machinery.ModuleSpec(NAME, loader=None)
        sys.modules[NAME] = library
    return placeholders_in_use()
