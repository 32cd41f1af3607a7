"""The detector makes the host wait for the device once per training step, and never in its
forward, backward or predictions.

Checked on PyTorch's meta device, where tensors have shapes but no data: reading data on the host
(``.item()``, ``.tolist()``, ``nonzero``, boolean indexing, ``if tensor:``) raises there, and a
dispatch mode catches the host-to-device copies that block on a GPU (``torch.tensor(..., device=)``,
``.to(device)`` without ``non_blocking``). What runs on meta here runs on CUDA without a
synchronization. The one wait of a training step is the copy of all cost matrices of the
Hungarian matching to the host; :class:`HostReads` counts it and hands scipy made-up costs. With
CUDA, a training step also runs under ``torch.cuda.set_sync_debug_mode``, which counts the
synchronizations themselves.
"""
import os
import traceback
import warnings
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


def caller():
    """file:line of the innermost frame outside torch and this file."""
    frame = next(frame for frame in reversed(traceback.extract_stack())
                 if 'torch' not in frame.filename.split(os.sep)[-3:-1]
                 and frame.filename != __file__)
    return f'{frame.filename}:{frame.lineno}'


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
            self.found.append(f'{func} at {caller()}')
        return out


class HostReads(BlockingHostToDevice):
    """Also records what copies device data to the host (``.cpu()``, ``.numpy()``, ``.item()``,
    ``if tensor:``), each a wait for the device, and gives the host made-up data for it: uniform
    random numbers in [0, 1), a valid cost matrix."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        on_device = source is not None and source.device.type != 'cpu'
        to_host = (func is torch.ops.aten._to_copy.default and on_device
                   and torch.device(kwargs.get('device', source.device)).type == 'cpu')
        if to_host or (func is torch.ops.aten._local_scalar_dense.default and on_device):
            self.reads.append(f'{func} at {caller()}')
            data = torch.rand(source.shape)
            return data.to(kwargs.get('dtype') or source.dtype) if to_host else data.sum().item()
        return super().__torch_dispatch__(func, types, args, kwargs)


def build(config, device):
    register_all_modules()
    cfg = shrink_model(Config.fromfile(os.path.join(ROOT, 'configs', config)))
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device)


def build_on_meta(config):
    return build(config, 'meta')


def device_batch(device):
    """:func:`fake_batch` as the data preprocessor hands it to the model on ``device``."""
    batch = fake_batch()
    inputs = torch.randn(2, 3, 96, 128).to(device)
    for sample in batch['data_samples']:
        sample.set_metainfo(dict(batch_input_shape=(96, 128)))
        sample.gt_instances = sample.gt_instances.to(device)
    return inputs, batch['data_samples']


def meta_batch():
    return device_batch('meta')


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


def training_step(model, inputs, samples):
    """Forward, losses and backward, as ``train_step`` runs them between the data preprocessor
    and the optimizer."""
    losses = model.loss(inputs, samples)
    sum(losses.values()).backward()
    return losses


@pytest.mark.parametrize('config', CONFIGS)
def test_a_training_step_waits_for_the_device_once(config, record_property):
    model = build_on_meta(config).train()
    inputs, samples = meta_batch()
    with HostReads() as host:
        losses = training_step(model, inputs, samples)
    assert not host.found, "\n".join(sorted(set(host.found)))
    print(f'\nhost reads per training step ({config}, meta device): {len(host.reads)}: '
          f'{host.reads}')
    record_property('host_reads_per_training_step', len(host.reads))
    assert len(host.reads) == 1 and 'batched_matching.py' in host.reads[0], host.reads
    assert 'd0.loss_iou' in losses and all(v.device.type == 'meta' for v in losses.values())
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_a_training_step_without_gts_never_waits():
    model = build_on_meta(CONFIGS[1]).train()
    inputs, samples = meta_batch()
    for sample in samples:
        sample.gt_instances = sample.gt_instances[:0]
    with HostReads() as host:
        training_step(model, inputs, samples)
    assert not host.found and not host.reads, host.found + host.reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('config', CONFIGS)
def test_a_cuda_training_step_synchronizes_once(config, record_property):
    model = build(config, 'cuda').train()
    inputs, samples = device_batch('cuda')
    training_step(model, inputs, samples)  # warm-up: lazy initialization of CUDA libraries
    model.zero_grad()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            training_step(model, inputs, samples)
        finally:
            torch.cuda.set_sync_debug_mode('default')
    syncs = [str(w.message).splitlines()[0] for w in caught
             if 'synchronizing' in str(w.message)]
    print(f'\nCUDA synchronizations per training step ({config}): {len(syncs)}: {syncs}')
    record_property('cuda_syncs_per_training_step', len(syncs))
    assert len(syncs) == 1, syncs
