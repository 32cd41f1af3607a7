"""The CUDA op run on the CPU: ops/csrc/cuda's host code and its kernels' own source, compiled
as host code with cuda_emulation.h standing in for the GPU (see that file for what it models).

:func:`emulated_ms_deform_attn` has the signature and autograd of ``mmdeform.ops.ms_deform_attn``,
plus the emulation's knobs: ``max_blocks`` caps the grid so that grid-stride loops wrap,
``seed`` shuffles the order of blocks and of threads (None: index order), ``force_int64`` takes
the 64-bit index kernels. The backward is the deterministic one under
``torch.use_deterministic_algorithms(True)``, as on a GPU.

The library is compiled on first use into build/cuda_emulation (about a minute; ninja rebuilds
it only when a source changes).
"""
import functools
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
NO_CAP = 2**31 - 1


@functools.lru_cache(maxsize=None)
def emulated_ops():
    """Builds (once) and loads the library; returns ``torch.ops.mmdeform_emulated``."""
    from torch.utils import cpp_extension
    build = os.path.join(ROOT, 'build', 'cuda_emulation')
    os.makedirs(build, exist_ok=True)
    cpp_extension.load(
        name='mmdeform_cuda_emulation',
        sources=[os.path.join(HERE, 'emulated_ops.cpp'),
                 os.path.join(ROOT, 'ops', 'csrc', 'ms_deform_attn_checks.cpp')],
        extra_include_paths=[os.path.join(ROOT, 'ops', 'csrc')],
        # The kernels load vectors through reinterpret_cast, as CUDA code does.
        extra_cflags=['-O2', '-fno-strict-aliasing', '-Wno-unknown-pragmas'],
        build_directory=build, is_python_module=False)
    return torch.ops.mmdeform_emulated


class _EmulatedAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations,
                attention_weights, launch):
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights)
        ctx.launch = launch
        return emulated_ops().ms_deform_attn_forward(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights,
                                                     *launch)

    @staticmethod
    def backward(ctx, grad_output):
        grad_value, grad_locations, grad_weights = emulated_ops().ms_deform_attn_backward(
            grad_output.contiguous(), *ctx.saved_tensors, *ctx.launch)
        return grad_value, None, None, grad_locations, grad_weights, None


def emulated_ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                            attention_weights, max_blocks=NO_CAP, seed=None, force_int64=False):
    launch = (max_blocks, -1 if seed is None else seed, force_int64)
    return _EmulatedAttention.apply(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, launch)
