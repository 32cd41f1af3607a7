"""tools/dist_train.sh trains with 2 processes through torchrun: on CPU with gloo."""
import os
import os.path as osp
import socket
import subprocess
import sys

import torch
from tools_toy_modules import read_train_records, write_tiny_coco

TOOLS_TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(TOOLS_TESTS))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_share_the_data_and_save_once(tmp_path):
    write_tiny_coco(tmp_path / 'coco')
    work_dir = tmp_path / 'work_dir'
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([TOOLS_TESTS, os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'),
         osp.join(TOOLS_TESTS, 'tiny_detr_config.py'), '2', '--work-dir', str(work_dir),
         '--seed', '0', '--cfg-options',
         f'train_dataloader.dataset.data_root={tmp_path / "coco"}', 'train_cfg.max_epochs=1'],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    if not torch.cuda.is_available():
        assert 'using the gloo backend' in result.stdout + result.stderr

    (iterations0, saves0), (iterations1, saves1) = (read_train_records(work_dir, rank)
                                                    for rank in (0, 1))
    # 8 images, 2 processes, batches of 2: 2 iterations each, on different images
    assert sorted(iterations0) == sorted(iterations1) == [1, 2]
    images0 = [i for record in iterations0.values() for i in record['img_ids']]
    images1 = [i for record in iterations1.values() for i in record['img_ids']]
    assert sorted(images0 + images1) == list(range(1, 9))
    # one save, by rank 0
    assert saves0 == [dict(saved_iter=2, rank=0)] and saves1 == []
    assert sorted(name for name in os.listdir(work_dir) if name.endswith('.pth')) == \
        ['epoch_1.pth']
    assert not [name for name in os.listdir(work_dir) if name.endswith('.partial')]
