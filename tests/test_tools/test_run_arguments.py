"""--seed and --deterministic, shared by tools/train.py and tools/test.py."""
import argparse
import os
import os.path as osp

from mmdeform.utils import add_run_arguments, load_run_config

TOY_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_config.py')


def _config(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    add_run_arguments(parser)
    return load_run_config(parser.parse_args([TOY_CONFIG, *argv]))


def test_seed_and_deterministic_set_randomness(monkeypatch):
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    assert 'randomness' not in _config()
    assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ

    assert _config('--seed', '7').randomness == dict(seed=7)
    assert _config('--deterministic').randomness == dict(seed=None, deterministic=True)
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'  # cuBLAS's deterministic mode
    # the command line wins over --cfg-options
    cfg = _config('--cfg-options', 'randomness.seed=1', 'randomness.diff_rank_seed=True',
                  '--seed', '2', '--deterministic')
    assert cfg.randomness == dict(seed=2, diff_rank_seed=True, deterministic=True)
