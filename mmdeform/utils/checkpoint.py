"""Checkpoint files: loaded with torch's safe unpickler, written atomically.

Let torch's ``weights_only`` loader (the default since torch 2.6) read mmengine checkpoints.

A checkpoint saved by mmengine's Runner carries the message hub: ``HistoryBuffer`` objects that
hold numpy arrays, and numpy scalars such as the ``best_score`` of ``CheckpointHook``. mmengine
0.10.7 calls ``torch.load`` without ``weights_only``, so resuming (and testing a checkpoint that
has a message hub) fails on these globals. We allow exactly them, found by saving a checkpoint
through the Runner and resuming it; everything else stays refused.
"""
import os
import pickle
import uuid
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

try:  # numpy >= 2 (numpy.core is a deprecated alias of numpy._core there)
    from numpy._core import multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray

# A checkpoint names numpy's private module of the numpy that saved it, so accept both spellings:
# the same functions then load checkpoints saved under numpy 1.x and 2.x alike.
_MULTIARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')

# The arrays of a HistoryBuffer: float64 values and int64 counts; numpy scalars are float64.
_DTYPES = (np.float64, np.int64)

# HistoryBuffer pickles its statistics methods, e.g. ``min``, which protocol 2 (torch.save's
# default) writes as ``getattr(HistoryBuffer, 'min')``.
_HISTORY_BUFFER_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))

# The name ending of the temporary files of atomic_write, which a killed process leaves behind.
PARTIAL_SUFFIX = '.partial'


def _history_buffer_getattr(obj, name):
    """``builtins.getattr`` narrowed to the statistics methods of ``HistoryBuffer``.

    The real ``getattr`` would let a checkpoint reach any attribute of any allowed object (module
    dicts through ``__globals__``, for one), so it is never allowed as such.
    """
    if obj is not HistoryBuffer or name not in _HISTORY_BUFFER_STATISTICS:
        raise pickle.UnpicklingError(
            f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint: only '
            f'HistoryBuffer.{{{", ".join(sorted(_HISTORY_BUFFER_STATISTICS))}}} are')
    return getattr(HistoryBuffer, name)


def allow_mmengine_checkpoint_globals() -> None:
    """Add the globals of mmengine's checkpoints to torch's ``weights_only`` allow-list.

    Idempotent: torch keeps the allow-list as a set.
    """
    safe_globals = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        # ``np.dtype('f8')`` is an instance of a dtype subclass (numpy.dtypes.Float64DType in
        # numpy >= 1.25) that the unpickler must be allowed to restore the state of.
        *(type(np.dtype(dtype)) for dtype in _DTYPES),
    ]
    for module in _MULTIARRAY_MODULES:
        safe_globals += [(multiarray._reconstruct, f'{module}._reconstruct'),
                         (multiarray.scalar, f'{module}.scalar')]
    torch.serialization.add_safe_globals(safe_globals)


def load_checkpoint_file(path):
    """``torch.load`` of a local checkpoint on CPU with torch's safe unpickler, mmengine's
    globals allowed; a clear error when the file is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    allow_mmengine_checkpoint_globals()
    return torch.load(path, map_location='cpu', weights_only=True)


@contextmanager
def atomic_write(path, mode='wb', encoding=None):
    """Open ``path`` for writing so that it changes all at once or not at all.

    The data go to a hidden temporary file beside ``path`` (``.NAME.<random>.partial``), which is
    flushed to disk and renamed onto ``path`` when the block ends without error; on an error it
    is deleted. A process killed midway leaves ``path`` as it was, and the temporary file behind.

    Args:
        path (str): The file to write.
        mode (str): ``'wb'`` or ``'w'``.
        encoding (str, optional): The text encoding, for mode ``'w'``.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}')
    # 'x' creates the file with the usual permissions (mkstemp's would be 0600)
    file = open(tmp, mode.replace('w', 'x'), encoding=encoding)
    try:
        with file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint_file(checkpoint, path):
    """``torch.save`` through :func:`atomic_write`: an interrupted save never leaves a truncated
    file under the final name."""
    with atomic_write(path) as f:
        torch.save(checkpoint, f)
