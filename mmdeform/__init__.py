from . import mmcv_ext
from .version import __version__

# Before anything imports mmdet's models: they import mmcv.ops, which needs mmcv._ext.
mmcv_ext.install()

# mmengine's loaders (a Runner's resume, mmdet's DetInferencer) call torch.load, whose default
# weights_only unpickler refuses the message hub of mmengine's checkpoints: allow exactly its
# globals (a narrow, fixed list; everything else stays refused). Without mmengine (the op
# alone, as on a GPU machine without OpenMMLab) there is nothing to allow.
try:
    import mmengine  # noqa: E402, F401
except ImportError:
    pass
else:
    from .utils.checkpoint import allow_mmengine_checkpoint_globals
    allow_mmengine_checkpoint_globals()

__all__ = ['__version__']
