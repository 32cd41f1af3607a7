"""Every reader of checkpoints (load_checkpoint_file, tools/train.py's --resume and load_from,
tools/test.py, init_detector) names the file and what is wrong with it."""
import argparse
import os.path as osp

import pytest
import torch
from tools_loader import load_tool, run_tool

from mmdeform.apis import init_detector
from mmdeform.utils import load_checkpoint_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_CONFIG = osp.join(ROOT, 'tests', 'test_tools', 'toy_config.py')
TINY_CONFIG = osp.join(ROOT, 'tests', 'test_apis', 'tiny_deformable_detr.py')
train_tool = load_tool('train.py')
test_tool = load_tool('test.py')


def _truncated(path):
    torch.save(dict(state_dict=dict(weight=torch.ones(1000))), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # a half-finished download


def _legacy_truncated(path):
    torch.save(dict(state_dict=dict(weight=torch.ones(1000))), path,
               _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:100])


# what each damaged file is made by, and what the error says about it
CASES = {
    'empty': (lambda path: path.write_bytes(b''), r'is empty \(0 bytes\)'),
    'truncated': (_truncated, r'is truncated: a zip archive \(\d+ bytes\) without its end'),
    'truncated legacy format': (_legacy_truncated, r'is truncated \(100 bytes, torch.s legacy'),
    'text': (lambda path: path.write_text('Not Found\n'),
             r"is not a PyTorch checkpoint: it begins with b'Not Found\\n'"),
    'json': (lambda path: path.write_text('{"state_dict": {}}'),
             r"is not a PyTorch checkpoint: it begins with b'\{\"state_dict\": \{\}\}'"),
    'refused pickle': (lambda path: torch.save(dict(meta=argparse.Namespace(lr=1)), path),
                       r'holds a pickled argparse.Namespace, which torch.s safe \(weights_only\) '
                       r'unpickler refuses'),
    'not a dict': (lambda path: torch.save([torch.ones(2)], path),
                   r'holds a list, not the dict of a checkpoint'),
}


@pytest.fixture(params=CASES.values(), ids=CASES.keys())
def damaged(request, tmp_path):
    """A damaged checkpoint file, and the regex of what its error says after the file name."""
    make, message = request.param
    path = tmp_path / 'damaged.pth'
    make(path)
    return str(path), message


def _raises_naming(damaged):
    path, message = damaged
    return pytest.raises(ValueError, match=f'^checkpoint {path} {message}')


def test_load_checkpoint_file(damaged):
    with _raises_naming(damaged):
        load_checkpoint_file(damaged[0])


def test_train_resume(damaged, tmp_path, monkeypatch):
    with _raises_naming(damaged):
        run_tool(train_tool, monkeypatch, TOY_CONFIG, '--work-dir', str(tmp_path / 'work'),
                 '--resume', damaged[0])


def test_train_load_from(damaged, tmp_path, monkeypatch):
    with _raises_naming(damaged):
        run_tool(train_tool, monkeypatch, TOY_CONFIG, '--work-dir', str(tmp_path / 'work'),
                 '--cfg-options', f'load_from={damaged[0]}')


def test_test_tool(damaged, tmp_path, monkeypatch):
    with _raises_naming(damaged):
        run_tool(test_tool, monkeypatch, TOY_CONFIG, damaged[0], '--work-dir',
                 str(tmp_path / 'work'))


def test_init_detector(damaged):
    with _raises_naming(damaged):
        init_detector(TINY_CONFIG, damaged[0])
