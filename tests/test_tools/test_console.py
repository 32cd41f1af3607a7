"""tools/train.py and tools/test.py print a short header, not the environment, config and hook
dumps, which stay in the log file; the full config is still dumped into the work dir."""
import os
import os.path as osp
import subprocess
import sys
from glob import glob

from mmengine.config import Config

TOOLS_TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(TOOLS_TESTS))
TOY_CONFIG = osp.join(TOOLS_TESTS, 'toy_config.py')


def run(tool, *argv, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TOOLS_TESTS]))
    result = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *argv], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def assert_header(lines, work_dir, images, first_progress):
    console = '\n'.join(lines)
    for dump in ('Config:', 'System environment', 'Hooks will be executed'):
        assert dump not in console
    first = next(i for i, line in enumerate(lines) if first_progress in line)
    assert first < 20, console
    config_copy = osp.join(work_dir, 'toy_config.py')
    log_file = glob(osp.join(work_dir, '*', '*.log'))[-1]
    for expected in (f'config:      {TOY_CONFIG}', 'model:       ToyRegressor, 3 parameters',
                     f'images:      {images}', f'work dir:    {work_dir}',
                     f'full config: {config_copy} (with the environment and the hooks also in '
                     f'{log_file})'):
        assert expected in lines[:first], console
    with open(log_file) as f:
        log = f.read()
    assert 'Config:' in log and 'System environment' in log and 'Hooks will be executed' in log
    return config_copy


def test_train_and_test_print_a_header(tmp_path):
    work_dir = str(tmp_path / 'train')
    lines = run('train.py', TOY_CONFIG, '--work-dir', work_dir, cwd=tmp_path)
    config_copy = assert_header(lines, work_dir, 'train 8, val 8', 'Epoch(train) [1][1/4]')
    saved = Config.fromfile(config_copy)
    assert saved.model.type == 'ToyRegressor' and saved.train_cfg.max_epochs == 1

    test_dir = str(tmp_path / 'test')
    lines = run('test.py', TOY_CONFIG, osp.join(work_dir, 'epoch_1.pth'), '--work-dir', test_dir,
                cwd=tmp_path)
    assert_header(lines, test_dir, 'test 8', 'Epoch(test) [1/4]')
