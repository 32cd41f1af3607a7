"""A small forward and backward of the CUDA op, fast and deterministic, in fp32 and bf16, with
the 4x4 and the runtime (L, K) kernels, under torch.cuda.set_sync_debug_mode('error'): any
synchronization of the host with the device raises. For `make gpu-check`, also under
compute-sanitizer's memcheck. Exits non-zero when something fails.

    python tools/misc/msda_cuda_smoke.py
"""
import torch

from mmdeform.ops import level_start_index, ms_deform_attn, ms_deform_attn_reference

CASES = {  # level shapes (H, W), points
    'L=K=4': ([(20, 30), (10, 15), (5, 8), (3, 4)], 4),
    'L=2, K=3': ([(9, 7), (1, 1)], 3),
}


def make_inputs(shapes, points, dtype, batch=2, queries=50, heads=8, head_dims=32):
    generator = torch.Generator().manual_seed(0)
    spatial_shapes = torch.tensor(shapes)
    length, levels = int(spatial_shapes.prod(-1).sum()), len(shapes)
    sample = (batch, queries, heads, levels, points)
    tensors = [torch.randn(batch, length, heads, head_dims, generator=generator),
               spatial_shapes, level_start_index(spatial_shapes),
               torch.rand(*sample, 2, generator=generator) * 1.2 - 0.1,
               torch.rand(*sample, generator=generator)]
    return [t.to('cuda', dtype if t.is_floating_point() else None) for t in tensors]


def forward_backward(inputs):
    leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    out = ms_deform_attn(*leaves)
    out.backward(torch.ones_like(out))
    return out, leaves[0].grad, leaves[3].grad, leaves[4].grad


def main():
    failures = 0
    for case, (shapes, points) in CASES.items():
        for dtype in (torch.float32, torch.bfloat16):
            inputs = make_inputs(shapes, points, dtype)
            torch.cuda.synchronize()
            for deterministic in (False, True):
                torch.use_deterministic_algorithms(deterministic)
                torch.cuda.set_sync_debug_mode('error')
                try:
                    out, *_ = forward_backward(inputs)
                finally:
                    torch.cuda.set_sync_debug_mode('default')
                    torch.use_deterministic_algorithms(False)
                expected = ms_deform_attn_reference(*[t.double() if t.is_floating_point() else t
                                                      for t in inputs])
                error = float((out.double() - expected).abs().max())
                ok = error < (1e-4 if dtype == torch.float32 else 5e-2)
                failures += not ok
                print(f'{case} {dtype} deterministic={deterministic}: no sync; forward max error '
                      f'{error:.2e} {"ok" if ok else "TOO LARGE"}')
    torch.cuda.synchronize()
    raise SystemExit(failures)


if __name__ == '__main__':
    main()
