"""`tools/train.py --resume` trains with the config saved in the work dir: the first run's
command line need not be repeated, and what is given again must agree with it."""
import argparse
import os.path as osp

import pytest

from mmdeform.utils import (add_run_arguments, config_to_resume, load_run_config,
                            record_command_line_settings)

TOY_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_config.py')


def _write_config(folder, text=''):
    """``folder/run.py``: the toy config, changed by ``text``."""
    path = folder / 'run.py'
    path.write_text(f'_base_ = [{TOY_CONFIG!r}]\n{text}')
    return str(path)


def _run_config(config, work_dir, *argv):
    """The config tools/train.py would build from this command line (without --resume)."""
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    add_run_arguments(parser)
    return load_run_config(parser.parse_args([config, '--work-dir', str(work_dir), *argv]))


def _start(config, work_dir, *argv):
    """The first run: its config as recorded and saved in the work dir by the Runner."""
    cfg = _run_config(config, work_dir, *argv)
    record_command_line_settings(cfg, config)
    work_dir.mkdir()
    cfg.dump(osp.join(work_dir, osp.basename(config)))
    return cfg


FIRST_RUN = ('--seed', '3', '--cfg-options', 'optim_wrapper.optimizer.lr=0.5',
             'train_dataloader.dataset.num_samples=6')


def test_resume_reuses_the_saved_config(tmp_path):
    config = _write_config(tmp_path)
    first = _start(config, tmp_path / 'work', *FIRST_RUN)
    assert first.command_line_settings == [
        'optim_wrapper.optimizer.lr', 'randomness.seed', 'runner_type',
        'train_dataloader.dataset.num_samples']
    for argv in [(), FIRST_RUN, ('--cfg-options', 'optim_wrapper.optimizer.lr=0.5')]:
        cfg = config_to_resume(_run_config(config, tmp_path / 'work', *argv), config)
        assert cfg.optim_wrapper.optimizer.lr == 0.5
        assert cfg.randomness.seed == 3
        assert cfg.train_dataloader.dataset.num_samples == 6
        assert cfg.work_dir == str(tmp_path / 'work')


def test_resume_refuses_other_options(tmp_path):
    config = _write_config(tmp_path)
    _start(config, tmp_path / 'work', *FIRST_RUN)
    cfg = _run_config(config, tmp_path / 'work', '--seed', '4', '--cfg-options',
                      'optim_wrapper.optimizer.lr=0.1', 'train_cfg.max_epochs=1')
    with pytest.raises(ValueError) as error:
        config_to_resume(cfg, config)
    # train_cfg.max_epochs=1 is the config's value: agreed
    assert str(error.value) == (
        f'--resume: the run in {tmp_path / "work"} was started with another config than the '
        'one given, at:\n'
        '  optim_wrapper.optimizer.lr: 0.5 in the saved config, 0.1 on the command line\n'
        '  randomness.seed: 3 in the saved config, 4 on the command line\n'
        f'Resume without these options and with {config} as it was (its settings are in '
        f'{tmp_path / "work" / "run.py"}), or train in another work dir.')


def test_resume_refuses_a_changed_config_file(tmp_path):
    config = _write_config(tmp_path)
    _start(config, tmp_path / 'work', *FIRST_RUN)
    _write_config(tmp_path, 'train_cfg = dict(max_epochs=2)\n'
                  'default_hooks = dict(checkpoint=dict(interval_minutes=None))\n')
    with pytest.raises(ValueError, match=(
            r'(?s)at:\n  default_hooks.checkpoint.interval_minutes: 30 in the saved config, '
            f'None in {config}\n  train_cfg.max_epochs: 1 in the saved config, 2 in {config}\n'
            'Resume')):
        config_to_resume(_run_config(config, tmp_path / 'work'), config)


def test_resume_without_saved_config_uses_the_given_one(tmp_path):
    config = _write_config(tmp_path)
    cfg = _run_config(config, tmp_path / 'work', '--seed', '4')
    assert config_to_resume(cfg, config) is cfg
