"""Placeholders for mmcv's compiled op library (``mmcv._ext``) under mmcv-lite (docs/install.md).

mmdet imports ``mmcv.ops``, whose modules look their kernels up in ``mmcv._ext`` when imported.
Where that library is absent, :func:`install` (run by ``import mmdeform``) registers in its place
a module whose every attribute is a placeholder that raises :class:`MissingMmcvOpError`, naming
the op, when called: an mmcv kernel reached by mistake is an error, never a wrong result. Each
call is recorded in :data:`called_ops`, so that tests see it even where a caller catches the
error. With full mmcv nothing is replaced.

``make install`` also writes a start-up file (:func:`write_startup_file`) that puts
:class:`PlaceholderFinder` last on ``sys.meta_path`` in every interpreter of the venv, so that
mmdet imported before ``import mmdeform`` finds the placeholders too.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
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
    """Whether mmcv has its compiled library (full mmcv), asked of the file system only, so that
    :class:`PlaceholderFinder` does not answer for it."""
    try:
        import mmcv
    except ImportError:  # no mmcv at all
        return False
    return importlib.machinery.PathFinder.find_spec(NAME, mmcv.__path__) is not None


def _without_loader(library):
    # A spec without a loader: importlib and pkgutil find the module, and mmengine's
    # mmcv_full_available() (a pkgutil loader lookup) answers False, as it should.
    library.__spec__ = importlib.machinery.ModuleSpec(NAME, loader=None)
    library.__loader__ = None
    return library


def install():
    """Registers the placeholder library unless ``mmcv._ext`` is imported or found (full mmcv).

    Returns:
        bool: whether the placeholders are in use.
    """
    if NAME not in sys.modules and not _mmcv_library_found():
        sys.modules[NAME] = _without_loader(PlaceholderLibrary(NAME, __doc__))
    return placeholders_in_use()


class PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The finder of last resort for ``mmcv._ext``: the placeholder library, where no finder
    before it on ``sys.meta_path`` finds mmcv's (mmcv-lite)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(NAME, self) if name == NAME else None

    def create_module(self, spec):
        return PlaceholderLibrary(NAME, __doc__)

    def exec_module(self, module):
        _without_loader(module)


def install_finder():
    """Puts :class:`PlaceholderFinder` last on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, PlaceholderFinder) for finder in sys.meta_path):
        sys.meta_path.append(PlaceholderFinder())


def write_startup_file(site_packages=None):
    """Writes ``mmdeform_mmcv_ext.pth`` into ``site_packages`` (this interpreter's by default):
    at start-up it loads this file (standard library only, no torch) and calls
    :func:`install_finder`.

    Returns:
        str: the path written.
    """
    site_packages = site_packages or sysconfig.get_paths()['purelib']
    path = os.path.join(site_packages, 'mmdeform_mmcv_ext.pth')
    source = os.path.abspath(__file__)
    # site.py executes a .pth line that starts with 'import': one line, so one statement list;
    # a source moved away makes it do nothing.
    line = (f'import importlib.util, os, sys; source = {source!r}; '
            "spec = os.path.isfile(source) and importlib.util.spec_from_file_location("
            "'mmdeform.mmcv_ext', source); "
            'module = spec and sys.modules.setdefault(spec.name, '
            'importlib.util.module_from_spec(spec)); '
            'spec and spec.loader.exec_module(module); spec and module.install_finder()\n')
    with open(path, 'w') as f:
        f.write(line)
    return path
