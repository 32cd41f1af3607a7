import uuid

import pytest
import torch
from mmengine import DefaultScope
from mmengine.config import Config

from mmdeform.registry import HOOKS, OPTIM_WRAPPERS
from mmdeform.utils import register_all_modules, setup_cpu_distributed


def test_register_all_modules_default_scope():
    register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'mmdeform'
    assert 'InferenceSpeedHook' in HOOKS.module_dict
    assert 'CpuAmpOptimWrapper' in OPTIM_WRAPPERS.module_dict

    DefaultScope.get_instance(f'other-{uuid.uuid4().hex}', scope_name='mmengine')
    register_all_modules(init_default_scope=False)
    assert DefaultScope.get_current_instance().scope_name == 'mmengine'
    with pytest.warns(UserWarning, match='force the current default scope'):
        register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'mmdeform'


def test_setup_cpu_distributed(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        lambda **kwargs: calls.append(kwargs))

    cfg = Config(dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl',
                                                                     timeout=60))))
    setup_cpu_distributed(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert len(calls) == 1 and calls[0]['backend'] == 'gloo'
    assert calls[0]['timeout'].total_seconds() == 60
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None  # DDP of a CPU model

    setup_cpu_distributed(Config(dict(launcher='none')))
    assert len(calls) == 1
    with pytest.raises(RuntimeError, match='--launcher pytorch'):
        setup_cpu_distributed(Config(dict(launcher='slurm')))


def test_setup_cpu_distributed_keeps_cuda_runs(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = Config(dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    setup_cpu_distributed(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg
