"""Checkpoint files: loaded with torch's safe unpickler, written atomically.

Let torch's ``weights_only`` loader (the default since torch 2.6) read mmengine checkpoints, and
every reader (mmengine's Runner included, through :func:`register_checkpoint_loader`) say which
file is unreadable and why: empty, truncated, not a checkpoint, or a refused pickle.

A checkpoint saved by mmengine's Runner carries the message hub: ``HistoryBuffer`` objects that
hold numpy arrays, and numpy scalars such as the ``best_score`` of ``CheckpointHook``. mmengine
0.10.7 calls ``torch.load`` without ``weights_only``, so resuming (and testing a checkpoint that
has a message hub) fails on these globals. We allow exactly them, found by saving a checkpoint
through the Runner and resuming it; everything else stays refused.
"""
import os
import pickle
import re
import uuid
import zipfile
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

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


def load_checkpoint_file(path, map_location='cpu'):
    """``torch.load`` of a local checkpoint with torch's safe unpickler, mmengine's globals
    allowed.

    Raises:
        FileNotFoundError: where ``path`` is not a file.
        ValueError: naming ``path`` and what is wrong with it where it is not a readable
            checkpoint (see :func:`unreadable_checkpoint_reason`), or does not hold a dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    allow_mmengine_checkpoint_globals()
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch's exception depends on how the file is damaged
        raise ValueError(f'checkpoint {path} {unreadable_checkpoint_reason(path, error)}') \
            from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f'checkpoint {path} holds a {type(checkpoint).__name__}, not the dict '
                         f'of a checkpoint (a state dict, or one under "state_dict")')
    return checkpoint


# How torch.load (2.x) names a global that its weights_only unpickler refuses.
_REFUSED_GLOBAL = re.compile(r'Unsupported global: GLOBAL (\S+) was not an allowed global')
# The start of a checkpoint in torch's legacy (non-zip) format: a pickled magic number.
_LEGACY_MAGIC = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.'


def unreadable_checkpoint_reason(path, error):
    """What is wrong with the file ``path`` that ``torch.load`` failed on with ``error``, told by
    its content where it can be (torch's exceptions say little), else by ``error``."""
    size = os.path.getsize(path)
    refused = _REFUSED_GLOBAL.search(str(error))
    with open(path, 'rb') as file:
        head = file.read(64)
    if size == 0:
        return 'is empty (0 bytes): an interrupted download or copy? Fetch it again.'
    if refused:
        return (f'holds a pickled {refused.group(1)}, which torch\'s safe (weights_only) '
                f'unpickler refuses: a checkpoint holds tensors, containers and numbers (and '
                f'mmengine\'s message hub). If you trust the file, save its weights alone: '
                f'torch.save(dict(state_dict=torch.load(path, weights_only=False)["state_dict"]),'
                f' new_path).')
    if head.startswith(b'PK\x03\x04') and not zipfile.is_zipfile(path):
        return (f'is truncated: a zip archive ({size} bytes) without its end (the central '
                f'directory), e.g. an interrupted download or copy. Fetch it again.')
    if head.startswith(b'PK\x03\x04') and not _has_pickle(path):
        return 'is a zip archive but not a PyTorch checkpoint (it has no data.pkl)'
    if head.startswith(_LEGACY_MAGIC) and isinstance(error, EOFError):
        return (f'is truncated ({size} bytes, torch\'s legacy format), e.g. an interrupted '
                f'download or copy. Fetch it again.')
    if head.startswith(b'\x80') and not head.startswith(_LEGACY_MAGIC):
        return 'is a pickle that torch.save did not write: not a PyTorch checkpoint'
    if head[8:10] == b'{"' and int.from_bytes(head[:8], 'little') < size:
        return ('is a safetensors file, not a PyTorch checkpoint: Hugging Face weights convert '
                'with tools/model_converters/hf_to_mmdeform.py')
    if not head.startswith((b'PK\x03\x04', b'\x80')):
        return f'is not a PyTorch checkpoint: it begins with {head[:32]!r}'
    return f'cannot be read: {type(error).__name__}: {error}'


def _has_pickle(path):
    """Whether the zip archive ``path`` holds the ``ARCHIVE/data.pkl`` of ``torch.save``."""
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('/data.pkl') for name in archive.namelist())


def register_checkpoint_loader():
    """Make mmengine read local checkpoints (``load_from``, ``resume``, ``init_cfg``'s
    ``Pretrained``) with :func:`load_checkpoint_file`, so that their errors name the file and
    what is wrong with it. Idempotent."""
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint, force=True)


def _load_local_checkpoint(filename, map_location):
    """mmengine's ``load_from_local``, through :func:`load_checkpoint_file`."""
    return load_checkpoint_file(os.path.expanduser(filename), map_location)


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
