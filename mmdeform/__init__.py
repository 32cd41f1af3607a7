from . import mmcv_ext
from .version import __version__

# Before anything imports mmdet's models: they import mmcv.ops, which needs mmcv._ext.
mmcv_ext.install()

__all__ = ['__version__']
