"""Placeholders for mmcv's compiled op library (``mmcv._ext``) under mmcv-lite.

mmdeform installs mmcv-lite: mmcv's Python package without its ~60 compiled ops, none of which
mmdeform calls. mmdet imports ``mmcv.ops`` anyway, whose modules look their kernels up in
``mmcv._ext`` when they are imported. Where that library is absent, :func:`install` (run by
``import mmdeform``, so import it before ``mmdet.models``, ``mmdet.apis`` or
``mmdet.evaluation``) registers a module in its place whose every attribute is a placeholder
that raises :class:`MissingMmcvOpError`, naming the op, when called. It never computes
anything, so an mmcv kernel reached by mistake is an error, never a wrong result, and each call
is recorded in :data:`called_ops`, so that tests see it even where a caller catches the error.
With full mmcv installed nothing is replaced and its real ops are used.
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
            "comes without mmcv's compiled ops (mmdeform itself needs none of them). To use "
            "modules built on mmcv ops (for example a DCN backbone or mmcv's nms), install full "
            "mmcv: pip uninstall -y mmcv-lite && pip install --no-build-isolation mmcv==2.1.0 "
            "(it compiles its ops against the installed torch, which must be 2.13 or older; "
            "about 20 minutes on 2 cores).")

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


def real_library_present():
    if NAME in sys.modules:
        return not placeholders_in_use()
    try:
        return importlib.util.find_spec(NAME) is not None
    except ModuleNotFoundError:  # no mmcv at all
        return False


def install():
    """Registers the placeholder library unless the real one (full mmcv) is installed.

    Returns:
        bool: whether the placeholders are in use.
    """
    if real_library_present():
        return False
    if NAME not in sys.modules:
        library = PlaceholderLibrary(NAME, __doc__)
        # A spec without a loader: importlib and pkgutil find the module, and mmengine's
        # mmcv_full_available() (a pkgutil loader lookup) answers False, as it should.
        library.__spec__ = importlib.machinery.ModuleSpec(NAME, loader=None)
        sys.modules[NAME] = library
    return True
