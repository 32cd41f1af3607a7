"""tools/train.py and tools/test.py: arguments, clear errors, and a train/resume/test round trip
on the toy model (in-process, to keep it fast)."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
from glob import glob

import pytest
import torch
from tools_loader import load_tool, run_tool
from tools_toy_modules import SimulatedCrash

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_config.py')


train_tool = load_tool('train.py')
test_tool = load_tool('test.py')


def _parse(tool, monkeypatch, *argv):
    monkeypatch.setattr(sys, 'argv', [f'{tool.__name__}.py', *argv])
    return tool.parse_args()


@pytest.fixture(autouse=True)
def _local_rank(monkeypatch):
    # parse_args exports LOCAL_RANK (for the launchers); keep it out of the other tests.
    monkeypatch.delenv('LOCAL_RANK', raising=False)


def test_train_args(monkeypatch):
    args = _parse(train_tool, monkeypatch, TOY_CONFIG)
    assert (args.work_dir, args.resume, args.amp, args.auto_scale_lr) == (None, None, False, False)
    assert args.launcher == 'none' and os.environ['LOCAL_RANK'] == '0'

    monkeypatch.delenv('LOCAL_RANK')  # a launcher's LOCAL_RANK would win over --local-rank
    args = _parse(train_tool, monkeypatch, TOY_CONFIG, '--work-dir', 'wd', '--amp',
                  '--auto-scale-lr', '--launcher', 'pytorch', '--local-rank', '3',
                  '--cfg-options', 'train_cfg.max_epochs=3', 'model.depth=[1,2]', '--resume')
    assert (args.work_dir, args.amp, args.auto_scale_lr) == ('wd', True, True)
    assert args.resume == 'auto'  # --resume without a path: the latest in the work dir
    assert args.cfg_options == {'train_cfg.max_epochs': 3, 'model.depth': [1, 2]}
    assert args.launcher == 'pytorch' and args.local_rank == 3
    assert os.environ['LOCAL_RANK'] == '3'

    args = _parse(train_tool, monkeypatch, TOY_CONFIG, '--resume', TOY_CONFIG, '--local_rank', '1')
    assert args.resume == TOY_CONFIG and args.local_rank == 1


def test_test_args(monkeypatch):
    args = _parse(test_tool, monkeypatch, TOY_CONFIG, TOY_CONFIG, '--out', 'preds.pkl', '--show',
                  '--show-dir', 'vis', '--wait-time', '0.5', '--launcher', 'slurm')
    assert (args.out, args.show, args.show_dir, args.wait_time) == ('preds.pkl', True, 'vis', 0.5)
    assert args.launcher == 'slurm' and args.work_dir is None
    # a URL is mmengine's to download, not a missing file
    args = _parse(test_tool, monkeypatch, TOY_CONFIG, 'https://example.com/model.pth')
    assert args.checkpoint == 'https://example.com/model.pth'


@pytest.mark.parametrize('tool, argv, message', [
    (train_tool, ['missing/config.py'], 'config file missing/config.py does not exist'),
    (train_tool, [TOY_CONFIG, '--resume', 'missing/epoch_1.pth'],
     'checkpoint to resume from missing/epoch_1.pth does not exist'),
    (train_tool, [TOY_CONFIG, '--launcher', 'ssh'], "invalid choice: 'ssh'"),
    (test_tool, [TOY_CONFIG, 'missing/epoch_1.pth'],
     'checkpoint file missing/epoch_1.pth does not exist'),
    (test_tool, [TOY_CONFIG, TOY_CONFIG, '--out', 'preds.json'], '--out must be a .pkl'),
])
def test_clear_errors(tool, argv, message, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(tool, monkeypatch, *argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('tool, argv, missing', [
    ('train.py', ['no/such/config.py'], 'config file no/such/config.py'),
    ('test.py', [TOY_CONFIG, 'no/such/checkpoint.pth'], 'checkpoint file no/such/checkpoint.pth'),
])
def test_missing_files_as_subprocess(tool, argv, missing, tmp_path):
    result = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *argv],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f'{missing} does not exist' in result.stderr
    assert 'Traceback' not in result.stderr


def test_train_resume_amp_and_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default work dir is ./work_dirs/CONFIG_NAME
    work_dir = tmp_path / 'work_dirs' / 'toy_config'
    # --amp without CUDA trains with bfloat16 autocast; interrupted in epoch 2
    monkeypatch.setenv('INTERRUPT_AFTER_ITER', '5')
    with pytest.raises(SimulatedCrash):
        run_tool(train_tool, monkeypatch, TOY_CONFIG, '--amp', '--cfg-options',
                 'train_cfg.max_epochs=2')
    assert (work_dir / 'epoch_1.pth').is_file()
    monkeypatch.delenv('INTERRUPT_AFTER_ITER')

    # --resume without a path continues from the latest checkpoint (under weights_only=True),
    # with the config saved in the work dir: --amp and the options need not be given again.
    run_tool(train_tool, monkeypatch, TOY_CONFIG, '--resume')
    assert (work_dir / 'epoch_2.pth').is_file()
    resumed = torch.load(work_dir / 'epoch_2.pth')
    assert resumed['meta']['epoch'] == 2
    if not torch.cuda.is_available():
        assert "type='mmdeform.CpuAmpOptimWrapper'" in resumed['meta']['cfg']

    out = tmp_path / 'preds.pkl'
    run_tool(test_tool, monkeypatch, TOY_CONFIG, str(work_dir / 'epoch_2.pth'), '--work-dir',
         str(tmp_path / 'test'), '--out', str(out), '--cfg-options',
         'test_dataloader.dataset.num_samples=16')
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 16
    with open(glob(str(tmp_path / 'test' / '*' / '*.json'))[0]) as f:
        metrics = json.load(f)
    assert metrics['speed/images_per_s'] > 0 and metrics['speed/latency_ms'] > 0
    assert 'toy/mean' in metrics
