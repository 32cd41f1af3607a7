"""Times the CUDA op with CUDA events: the forward, the fast and the deterministic backward, and
the grid_sample reference (mmdeform.ops.ms_deform_attn_reference, the formulation other
implementations fall back to), at the shapes of an 800x1216 COCO image (benchmark_msda.py's
inputs): the encoder (every one of the 20197 pixels a query) at batch 2 and 4, the decoder
(300 queries) at batch 2; in fp32, bf16 and fp16. Needs only torch and mmdeform's CUDA build.

    python tools/analysis_tools/benchmark_msda_cuda.py [--out DIR] [--repeats 20]

Prints a Markdown table; with --out, also writes DIR/benchmark_msda_cuda.json (milliseconds:
median over the repeats after warm-up; peak memory the pass allocates on top of its inputs).
"""
import argparse
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_msda import make_inputs  # noqa: E402

from mmdeform.ops import ms_deform_attn_reference  # noqa: E402

SHAPES = [('encoder', 2), ('encoder', 4), ('decoder', 2)]
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def cuda_time_ms(fn, repeats, warmup=3):
    """Median of `repeats` timings of fn() with CUDA events, and the peak bytes it allocates."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), torch.cuda.max_memory_allocated() - base


class deterministic_algorithms:

    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        self.previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(self.enabled)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.previous)


def passes(stage, batch, dtype, device='cuda'):
    """name -> a zero-argument callable running that pass once."""
    value, shapes, starts, locations, weights = make_inputs(stage, device, batch)
    value, locations, weights = (t.to(dtype) for t in (value, locations, weights))
    grad_output = torch.randn(value.shape[0], locations.shape[1],
                              value.shape[2] * value.shape[3], device=device, dtype=dtype)
    inputs = (value, shapes, starts, locations, weights)

    def forward():
        torch.ops.mmdeform.ms_deform_attn_forward(*inputs)

    def backward(deterministic):
        def run():
            with deterministic_algorithms(deterministic):
                torch.ops.mmdeform.ms_deform_attn_backward(grad_output, *inputs)
        return run

    leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    differentiable = [leaves[i] for i in (0, 3, 4)]

    def reference_forward():
        with torch.no_grad():
            ms_deform_attn_reference(*inputs)

    def reference_forward_backward():
        torch.autograd.grad(ms_deform_attn_reference(*leaves), differentiable, grad_output)

    return {
        'forward': forward,
        'backward (fast)': backward(False),
        'backward (deterministic)': backward(True),
        'reference forward': reference_forward,
        'reference forward+backward': reference_forward_backward,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', help='folder for benchmark_msda_cuda.json')
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit('benchmark_msda_cuda.py needs a CUDA GPU')
    device = torch.cuda.get_device_name()
    print(f'torch {torch.__version__}, {device}, median of {args.repeats} CUDA-event timings')
    results = []
    for stage, batch in SHAPES:
        for dtype_name, dtype in DTYPES.items():
            for name, fn in passes(stage, batch, dtype).items():
                ms, peak = cuda_time_ms(fn, args.repeats)
                results.append(dict(stage=stage, batch=batch, dtype=dtype_name, name=name, ms=ms,
                                    peak_mib=peak / 2**20))
                print(f'  {stage} N={batch} {dtype_name} {name}: {ms:.3f} ms', flush=True)
            torch.cuda.empty_cache()
    table = ['| stage | N | dtype | forward ms | backward ms (fast) | backward ms '
             '(deterministic) | deterministic / fast | reference fwd ms | reference fwd+bwd ms '
             '| ours fwd+bwd vs reference |', '|---|---|---|---|---|---|---|---|---|---|']
    for stage, batch in SHAPES:
        for dtype_name in DTYPES:
            ms = {r['name']: r['ms'] for r in results
                  if (r['stage'], r['batch'], r['dtype']) == (stage, batch, dtype_name)}
            ours = ms['forward'] + ms['backward (fast)']
            table.append(
                f"| {stage} | {batch} | {dtype_name} | {ms['forward']:.3f} | "
                f"{ms['backward (fast)']:.3f} | {ms['backward (deterministic)']:.3f} | "
                f"{ms['backward (deterministic)'] / ms['backward (fast)']:.2f}x | "
                f"{ms['reference forward']:.3f} | {ms['reference forward+backward']:.3f} | "
                f"{ms['reference forward+backward'] / ours:.1f}x |")
    print('\n'.join(table))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, 'benchmark_msda_cuda.json'), 'w') as f:
            json.dump(dict(torch=torch.__version__, device=device, repeats=args.repeats,
                           results=results), f, indent=1)


if __name__ == '__main__':
    main()
