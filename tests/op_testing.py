"""What the op tests share: the backends that run the op, random problems, running one."""
import pytest
import torch
from cuda_emulation import NO_CAP, emulated_ms_deform_attn, emulated_ops

from mmdeform.ops import KERNEL_DEVICES, level_start_index, ms_deform_attn

HAS_CUDA = torch.cuda.is_available() and 'cuda' in KERNEL_DEVICES
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason='needs a CUDA GPU and the CUDA build')

# name: (the op with autograd, device)
BACKENDS = {
    'cpu': (ms_deform_attn, 'cpu'),
    'emulated': (emulated_ms_deform_attn, 'cpu'),
    'cuda': (ms_deform_attn, 'cuda'),
}


def raw_backward(backend):
    """The backward op itself: (grad_output, value, ...) -> three gradients, no autograd."""
    if backend == 'emulated':
        return lambda *args: emulated_ops().ms_deform_attn_backward(*args, NO_CAP, -1, False)
    return torch.ops.mmdeform.ms_deform_attn_backward
backends = pytest.mark.parametrize('backend', [
    'cpu', 'emulated', pytest.param('cuda', marks=requires_cuda)])
gpu_backends = pytest.mark.parametrize('backend', [
    'emulated', pytest.param('cuda', marks=requires_cuda)])
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
dtypes = pytest.mark.parametrize('dtype', DTYPES, ids=str)


def make_problem(batch, shapes, heads, head_dims, queries, points, spread=1.0, seed=0):
    """fp64 inputs (value, spatial_shapes, level_start_index, locations, weights) and a
    gradient of the output. Locations span [0.5 - spread/2, 0.5 + spread/2] (outside the maps
    when spread > 1), on the 2^-12 grid, where x * W - 0.5 is exact in every dtype."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    levels, length = len(shapes), int(spatial_shapes.prod(-1).sum())
    value = torch.randn(batch, length, heads, head_dims, generator=generator, dtype=torch.float64)
    sample_shape = (batch, queries, heads, levels, points)
    locations = 0.5 + spread * (torch.rand(*sample_shape, 2, generator=generator,
                                           dtype=torch.float64) - 0.5)
    locations = (locations * 4096).round() / 4096
    weights = torch.rand(*sample_shape, generator=generator, dtype=torch.float64)
    grad_output = torch.randn(batch, queries, heads * head_dims, generator=generator,
                              dtype=torch.float64)
    return [value, spatial_shapes, level_start_index(spatial_shapes), locations,
            weights], grad_output


def rounded(tensors, dtype):
    return [t.to(dtype) if t.is_floating_point() else t for t in tensors]


def to(tensors, device):
    return [t.to(device) for t in tensors]


def run(op, inputs, grad_output):
    """The output and the gradients of value, locations and weights."""
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = op(*leaves)
    out.backward(grad_output)
    return out.detach(), leaves[0].grad, leaves[3].grad, leaves[4].grad


