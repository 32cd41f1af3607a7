"""Read the scalars that mmengine logs during training as curves over the iterations.

mmengine 0.10.7's LoggerHook hands every log record to the visualizer, whose LocalVisBackend
appends it as one JSON line to ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (and to
``<timestamp>.json`` beside it, the same lines):

- training records: ``{"lr": .., "loss": .., "time": .., "epoch": 1, "iter": 50, "step": 50}``
  (``iter`` is the global iteration; ``epoch`` only in epoch-based training);
- validation records: ``{"coco/bbox_mAP": .., "time": .., "data_time": .., "step": S}``, no
  ``iter``; S is the epoch, or the iteration when the LoggerHook has
  ``log_metric_by_epoch=False``.
"""
import glob
import json
import os
from typing import Dict, NamedTuple

import numpy as np

# Bookkeeping fields of a record, not curves.
_POSITION_KEYS = ('iter', 'step', 'epoch')


class Curve(NamedTuple):
    """One logged quantity: ``values[i]`` at iteration ``iters[i]``, iterations ascending."""
    iters: np.ndarray  # int64
    values: np.ndarray  # float64


def read_scalars(path: str) -> Dict[str, Curve]:
    """The curves logged by the runs of a work directory, one run, or one scalars file.

    Args:
        path (str): a JSON-lines file (``scalars.json`` or ``<timestamp>.json``), a run directory
            (``WORK_DIR/<timestamp>``) or a work directory, whose runs (e.g. a training and its
            resumption) are read oldest first; where they log the same key at the same
            iteration, the later run wins.

    Returns:
        dict[str, Curve]: by key as logged (``loss``, ``lr``, ``coco/bbox_mAP``, ...). The
        unprefixed keys of validation records (``time``, ``data_time``) get a ``val/`` prefix,
        so they stay apart from the training ones. A validation record's iteration is its
        ``step`` when that is an iteration, otherwise (step = epoch) the iteration of the last
        training record before it: exact when the logging interval divides the iterations of
        an epoch; set ``log_metric_by_epoch=False`` in the LoggerHook to log iterations.
    """
    points = {}  # key -> {iteration: value}
    last_train_iter = 0
    for file in scalar_files(path):
        for record in _records(file):
            if 'iter' in record:
                iteration = last_train_iter = int(record['iter'])
                prefix = ''
            else:
                # max: an epoch number never exceeds the iterations trained so far
                iteration = max(int(record.get('step', 0)), last_train_iter)
                prefix = 'val/'
            for key, value in record.items():
                if key in _POSITION_KEYS or not _is_number(value):
                    continue
                name = key if '/' in key else prefix + key
                points.setdefault(name, {})[iteration] = float(value)
    return {key: Curve(np.array(sorted(by_iter), dtype=np.int64),
                       np.array([by_iter[i] for i in sorted(by_iter)], dtype=np.float64))
            for key, by_iter in points.items()}


def scalar_files(path: str) -> list:
    """The scalars files ``path`` stands for (see :func:`read_scalars`), oldest first."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f'no such log file or directory: {path}')
    run_file = os.path.join(path, 'vis_data', 'scalars.json')
    if os.path.isfile(run_file):
        return [run_file]
    # Run directories are named by their start time, YYYYMMDD_HHMMSS: sorting is chronological.
    files = sorted(glob.glob(os.path.join(path, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json or vis_data/scalars.json in {path}')
    return files


def _records(file):
    with open(file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{file}, line {number}: not a JSON record ({error})') from None
            if not isinstance(record, dict):
                raise ValueError(f'{file}, line {number}: not a JSON object')
            yield record


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
