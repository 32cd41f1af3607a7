"""The detector's forward, backward and predictions never make the host wait for the device.

Checked on PyTorch's meta device, where tensors have shapes but no data: reading data on the host
(``.item()``, ``.tolist()``, ``nonzero``, boolean indexing, ``if tensor:``) raises there, and a
dispatch mode catches the host-to-device copies that block on a GPU (``torch.tensor(..., device=)``,
``.to(device)`` without ``non_blocking``). What runs on meta here runs on CUDA without a
synchronization. (The loss is left out: its Hungarian matching runs on the host, by design.)
"""
import os
import traceback
from contextlib import ExitStack
from unittest import mock

import pytest
import torch
from detector_checks import fake_batch, shrink_model
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.utils._python_dispatch import TorchDispatchMode

from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CONFIGS = ['deformable_detr_r50_single_scale.py', 'deformable_detr_r50.py',
           'deformable_detr_r50_refine.py', 'deformable_detr_r50_2stage.py']


class BlockingHostToDevice(TorchDispatchMode):
    """Records what copies host data into device tensors with the host waiting: ops taking a
    CPU tensor with elements into device tensors (other than a non-blocking copy), and
    constructors from host data with a device (torch.tensor, torch.as_tensor,
    Tensor.new_tensor), which dispatch modes do not see."""

    CONSTRUCTORS = ((torch, 'tensor'), (torch, 'as_tensor'), (torch.Tensor, 'new_tensor'))

    def __init__(self):
        super().__init__()
        self.found = []
        self.patches = ExitStack()

    def __enter__(self):
        for owner, name in self.CONSTRUCTORS:
            self.patches.enter_context(
                mock.patch.object(owner, name, self.recording(getattr(owner, name))))
        return super().__enter__()

    def __exit__(self, *exc):
        self.patches.close()
        return super().__exit__(*exc)

    def recording(self, constructor):

        def construct(*args, **kwargs):
            out = constructor(*args, **kwargs)
            if out.device.type != 'cpu':
                caller = traceback.extract_stack(limit=2)[0]
                self.found.append(f'{constructor.__name__} at {caller.filename}:{caller.lineno}')
            return out

        return construct

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        host = [a for a in args if isinstance(a, torch.Tensor) and a.device.type == 'cpu'
                and a.dim() > 0]
        outputs = out if isinstance(out, (tuple, list)) else [out]
        to_device = any(isinstance(o, torch.Tensor) and o.device.type != 'cpu' for o in outputs)
        if host and to_device and not kwargs.get('non_blocking', False):
            caller = next(frame for frame in reversed(traceback.extract_stack())
                          if 'torch' not in frame.filename.split(os.sep)[-3:-1])
            self.found.append(f'{func} at {caller.filename}:{caller.lineno}')
        return out


def build_on_meta(config):
    register_all_modules()
    cfg = shrink_model(Config.fromfile(os.path.join(ROOT, 'configs', config)))
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to('meta')


def meta_batch():
    batch = fake_batch()
    inputs = torch.zeros(2, 3, 96, 128, device='meta')
    for sample in batch['data_samples']:
        sample.set_metainfo(dict(batch_input_shape=(96, 128)))
    return inputs, batch['data_samples']


@pytest.mark.parametrize('config', CONFIGS)
def test_forward_backward_and_predict_never_wait_for_the_device(config):
    model = build_on_meta(config)
    inputs, samples = meta_batch()
    with BlockingHostToDevice() as copies:
        model.train()
        outputs = model._forward(inputs, samples)
        sum(o.sum() for o in outputs).backward()
        model.eval()
        with torch.no_grad():
            results = model.predict(inputs, samples)
    assert not copies.found, "\n".join(sorted(set(copies.found)))
    assert results[0].pred_instances.bboxes.device.type == 'meta'
    assert all(p.grad is not None for p in model.encoder.parameters())
