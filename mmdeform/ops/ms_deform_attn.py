"""Python face of the native op ``torch.ops.mmdeform.ms_deform_attn_forward``: autograd, the
fake kernel that lets torch.compile / torch.export trace it, the choice of kernel by device, and
the switch to the pure-PyTorch reference for exporters that need it (ONNX)."""
import warnings
from contextlib import contextmanager

import torch

from .reference import ms_deform_attn_reference

try:
    from mmdeform import _C  # noqa: F401  (registers the op's CPU/CUDA kernels)
except ImportError as error:  # not built: every device falls back to the reference
    warnings.warn(f'mmdeform._C is not built ({error}); ms_deform_attn uses the slow '
                  'pure-PyTorch reference. Run `make install` to build it.')
    KERNEL_DEVICES = frozenset()
else:
    # and 'meta' (shapes without data, e.g. to trace a model): the fake kernel registered below.
    KERNEL_DEVICES = frozenset(
        device for device, key in (('cpu', 'CPU'), ('cuda', 'CUDA'))
        if torch._C._dispatch_has_kernel_for_dispatch_key(
            'mmdeform::ms_deform_attn_forward', key)) | {'meta'}


# Set only by ``reference_forward()``: a plain module global, which torch.compile can guard on.
_force_reference = False


@contextmanager
def reference_forward():
    """Run :func:`ms_deform_attn` through the pure-PyTorch reference on every device.

    For exporters that cannot see into the native op: ONNX export traces the reference's
    ``grid_sample`` as ONNX ``GridSample``. Not thread-safe (a module global).
    """
    global _force_reference
    previous, _force_reference = _force_reference, True
    try:
        yield
    finally:
        _force_reference = previous


def level_start_index(spatial_shapes):
    """(L,) int64 offsets of each level in the flattened maps: the exclusive cumsum of H * W."""
    areas = spatial_shapes.prod(-1)
    return torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])


def flat_pixel_coords(spatial_shapes, num_pixels):
    """Level, column and row of each of the S positions of the flattened maps.

    S (``num_pixels``) is given rather than summed from ``spatial_shapes``: it is a static shape
    where the sum reads tensor data, so torch.export and torch.compile keep static shapes.

    Returns:
        tuple[Tensor]: three (S,) int64 tensors: level, x and y.
    """
    index = torch.arange(num_pixels, device=spatial_shapes.device)
    starts = level_start_index(spatial_shapes)
    level = (index[:, None] >= starts).sum(-1) - 1
    offset = index - starts[level]
    width = spatial_shapes[level, 1]
    return level, offset % width, offset // width


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights):
    """Multi-scale deformable attention (Deformable DETR, eq. 3).

    Args:
        value (Tensor): (N, S, M, D), the M heads' values of all levels, flattened.
        spatial_shapes (Tensor): (L, 2) int64, each level's (H, W).
        level_start_index (Tensor): (L,) int64, exclusive cumsum of H * W.
        sampling_locations (Tensor): (N, Lq, M, L, K, 2), normalized (x, y); (0, 0) is the
            top-left corner of the map, (1, 1) the bottom-right. Outside [0, 1] reads zeros.
        attention_weights (Tensor): (N, Lq, M, L, K).

    Returns:
        Tensor: (N, Lq, M * D). Differentiable in value, locations and weights.
    """
    if value.device.type in KERNEL_DEVICES and not _force_reference:
        return torch.ops.mmdeform.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    return ms_deform_attn_reference(value, spatial_shapes, level_start_index,
                                    sampling_locations, attention_weights)


if KERNEL_DEVICES:

    @torch.library.register_fake('mmdeform::ms_deform_attn_forward')
    def _forward_fake(value, spatial_shapes, level_start_index, sampling_locations,
                      attention_weights):
        torch._check(value.dim() == 4, lambda: 'ms_deform_attn: value must be (N, S, M, D)')
        torch._check(sampling_locations.dim() == 6,
                     lambda: 'ms_deform_attn: sampling_locations must be (N, Lq, M, L, K, 2)')
        num_batch, _, num_heads, head_dim = value.shape
        return value.new_empty((num_batch, sampling_locations.shape[1], num_heads * head_dim))

    @torch.library.register_fake('mmdeform::ms_deform_attn_backward')
    def _backward_fake(grad_output, value, spatial_shapes, level_start_index,
                       sampling_locations, attention_weights):
        return (torch.empty_like(value), torch.empty_like(sampling_locations),
                torch.empty_like(attention_weights))

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _backward(ctx, grad_output):
        grad_value, grad_locations, grad_weights = torch.ops.mmdeform.ms_deform_attn_backward(
            grad_output.contiguous(), *ctx.saved_tensors)
        return grad_value, None, None, grad_locations, grad_weights

    torch.library.register_autograd('mmdeform::ms_deform_attn_forward', _backward,
                                    setup_context=_setup_context)
