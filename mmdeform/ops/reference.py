"""Pure-PyTorch multi-scale deformable attention: the grid_sample formulation of the paper's
eq. 3. The tests' oracle for the native kernels and the fallback on devices without one."""
import torch
import torch.nn.functional as F


def ms_deform_attn_reference(value, spatial_shapes, level_start_index, sampling_locations,
                             attention_weights):
    """Same arguments and result as :func:`mmdeform.ops.ms_deform_attn`.

    Materializes an (N*M, D, Lq, L*K) tensor of samples: simple, differentiable, slow.
    """
    N, S, M, D = value.shape
    _, Lq, _, L, K, _ = sampling_locations.shape
    # grid_sample samples x in [-1, 1] with align_corners=False: pixel = loc * W - 0.5.
    grids = (2 * sampling_locations - 1).transpose(1, 2).flatten(0, 1)  # (N*M, Lq, L, K, 2)
    # A NaN or infinite location reads zeros, as in the native kernels (grid_sample would
    # return NaN): it is moved to -4, more than a pixel left of (or above) every map.
    grids = torch.where(grids.isfinite(), grids, grids.new_tensor(-4.0))
    samples = []
    for level, (H, W) in enumerate(spatial_shapes.tolist()):
        start = int(level_start_index[level])
        value_l = value[:, start:start + H * W].permute(0, 2, 3, 1).reshape(N * M, D, H, W)
        samples.append(
            F.grid_sample(value_l, grids[:, :, level], mode='bilinear', padding_mode='zeros',
                          align_corners=False))  # (N*M, D, Lq, K)
    samples = torch.stack(samples, dim=-2).flatten(-2)  # (N*M, D, Lq, L*K)
    weights = attention_weights.transpose(1, 2).reshape(N * M, 1, Lq, L * K)
    out = (samples * weights).sum(-1)  # (N*M, D, Lq)
    return out.view(N, M * D, Lq).transpose(1, 2).contiguous()
