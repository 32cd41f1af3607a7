"""Times mmdeform's multi-scale deformable attention, at the shapes of an 800x1216 COCO image in
Deformable DETR: levels (100,152), (50,76), (25,38), (13,19); M=8, D=32, L=4, K=4. The encoder's
queries are all 20197 pixels, the decoder's 300. Locations are what the model produces: each
query's reference point plus offsets of a few pixels per level.

    python tools/analysis_tools/benchmark_msda.py [--device cpu] [--repeats 3]
    python tools/analysis_tools/benchmark_msda.py --device cuda [--repeats 20] [--out DIR]

On the CPU (N=2): against mmcv's pure-PyTorch ``multi_scale_deformable_attn_pytorch``, in one
run on the same inputs. Peak memory is the growth of the process's resident set, measured in a
fresh process per case so earlier runs leave no cached memory.

On CUDA (needs only torch and mmdeform's CUDA build): with CUDA events, the forward, the fast
and the deterministic backward, and the grid_sample reference (``ms_deform_attn_reference``,
the formulation other implementations fall back to), for the encoder at N=2 and 4 and the
decoder at N=2, in fp32, bf16 and fp16. Prints a Markdown table; with --out, also writes
DIR/benchmark_msda_cuda.json (milliseconds: median over the repeats after warm-up; peak memory
the pass allocates on top of its inputs).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmdeform.ops import (KERNEL_DEVICES, deterministic_algorithms, level_start_index,
                          ms_deform_attn, ms_deform_attn_reference)

LEVELS = [(100, 152), (50, 76), (25, 38), (13, 19)]
BATCH, HEADS, HEAD_DIMS, POINTS = 2, 8, 32, 4
QUERIES = {'encoder': None, 'decoder': 300}  # None: every pixel is a query
CUDA_SHAPES = [('encoder', 2), ('encoder', 4), ('decoder', 2)]  # (stage, batch)
CUDA_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def implementations():
    """The CPU comparison (mmcv is needed there only: the CUDA path runs without it)."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    return {
        'mmdeform': ms_deform_attn,
        'mmcv pytorch': lambda value, shapes, starts, locations, weights:
        multi_scale_deformable_attn_pytorch(value, shapes, locations, weights),
    }


def make_inputs(stage, device, batch=BATCH):
    generator = torch.Generator().manual_seed(0)
    shapes = torch.tensor(LEVELS)
    pixels = torch.cat([
        torch.stack(torch.meshgrid((torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h,
                                   indexing='xy'), -1).reshape(-1, 2) for h, w in LEVELS])
    if QUERIES[stage] is None:
        reference = pixels
    else:
        reference = torch.rand(QUERIES[stage], 2, generator=generator)
    queries, levels = reference.shape[0], len(LEVELS)
    offsets = 2 * torch.randn(batch, queries, HEADS, levels, POINTS, 2, generator=generator)
    locations = reference[None, :, None, None, None] + offsets / shapes.flip(-1)[:, None]
    value = torch.randn(batch, pixels.shape[0], HEADS, HEAD_DIMS, generator=generator)
    weights = torch.randn(batch, queries, HEADS, levels, POINTS, generator=generator)
    weights = weights.flatten(-2).softmax(-1).view_as(weights)
    return [t.to(device) for t in (value, shapes, level_start_index(shapes), locations, weights)]


def run_once(fn, inputs, backward):
    if not backward:
        with torch.no_grad():
            return fn(*inputs)
    args = [t.requires_grad_() if t.is_floating_point() else t for t in inputs]
    out = fn(*args)
    out.backward(torch.ones_like(out))
    return out


def time_case(name, stage, backward, repeats):
    fn = implementations()[name]
    run_once(fn, make_inputs(stage, 'cpu'), backward)  # warm-up
    times = []
    for _ in range(repeats):
        inputs = make_inputs(stage, 'cpu')
        start = time.perf_counter()
        run_once(fn, inputs, backward)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def peak_memory_here(name, stage, backward):
    """Bytes of memory the call adds on top of its inputs at its peak (run in a fresh process)."""
    fn = implementations()[name]
    inputs = make_inputs(stage, 'cpu')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak resident set size (VmHWM) to the current one
    base = _status_kib('VmRSS')
    run_once(fn, inputs, backward)
    return (_status_kib('VmHWM') - base) * 1024


def peak_memory(name, stage, backward):
    command = [sys.executable, __file__, '--measure-memory', json.dumps([name, stage, backward])]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


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


def cuda_passes(stage, batch, dtype, device='cuda'):
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


def cuda_table(results):
    table = ['| stage | N | dtype | forward ms | backward ms (fast) | backward ms '
             '(deterministic) | deterministic / fast | reference fwd ms | reference fwd+bwd ms '
             '| ours fwd+bwd vs reference |', '|---|---|---|---|---|---|---|---|---|---|']
    for stage, batch in CUDA_SHAPES:
        for dtype_name in CUDA_DTYPES:
            ms = {r['name']: r['ms'] for r in results
                  if (r['stage'], r['batch'], r['dtype']) == (stage, batch, dtype_name)}
            ours = ms['forward'] + ms['backward (fast)']
            table.append(
                f"| {stage} | {batch} | {dtype_name} | {ms['forward']:.3f} | "
                f"{ms['backward (fast)']:.3f} | {ms['backward (deterministic)']:.3f} | "
                f"{ms['backward (deterministic)'] / ms['backward (fast)']:.2f}x | "
                f"{ms['reference forward']:.3f} | {ms['reference forward+backward']:.3f} | "
                f"{ms['reference forward+backward'] / ours:.1f}x |")
    return '\n'.join(table)


def benchmark_cuda(repeats, out):
    if not torch.cuda.is_available() or 'cuda' not in KERNEL_DEVICES:
        sys.exit('benchmark_msda.py --device cuda needs a CUDA GPU and the CUDA build of '
                 'mmdeform._C (torch sees no GPU, or the op was built without CUDA)')
    device = torch.cuda.get_device_name()
    print(f'torch {torch.__version__}, {device}, median of {repeats} CUDA-event timings')
    results = []
    for stage, batch in CUDA_SHAPES:
        for dtype_name, dtype in CUDA_DTYPES.items():
            for name, fn in cuda_passes(stage, batch, dtype).items():
                ms, peak = cuda_time_ms(fn, repeats)
                results.append(dict(stage=stage, batch=batch, dtype=dtype_name, name=name, ms=ms,
                                    peak_mib=peak / 2**20))
                print(f'  {stage} N={batch} {dtype_name} {name}: {ms:.3f} ms', flush=True)
            torch.cuda.empty_cache()
    print(cuda_table(results))
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, 'benchmark_msda_cuda.json'), 'w') as f:
            json.dump(dict(torch=torch.__version__, device=device, repeats=repeats,
                           results=results), f, indent=1)


def benchmark_cpu(repeats):
    print(f'torch {torch.__version__}, device cpu, {torch.get_num_threads()} threads, '
          f'median of {repeats}')
    rows = []
    for stage in QUERIES:
        out_bytes = make_inputs(stage, 'cpu')[0].element_size() * BATCH * HEADS * HEAD_DIMS * (
            QUERIES[stage] or sum(h * w for h, w in LEVELS))
        for backward in (False, True):
            mode = 'forward+backward' if backward else 'forward'
            result = {}
            for name in implementations():
                print(f'  {stage} {mode}: {name} ...', flush=True)
                seconds = time_case(name, stage, backward, repeats)
                memory = peak_memory(name, stage, backward)
                result[name] = (seconds, memory)
            ours, theirs = result['mmdeform'], result['mmcv pytorch']
            rows.append(f'| {stage} | {mode} | {ours[0] * 1e3:.1f} | {theirs[0] * 1e3:.1f} | '
                        f'{theirs[0] / ours[0]:.1f}x | {ours[1] / 2**20:.0f} '
                        f'({ours[1] / out_bytes:.1f}x out) | {theirs[1] / 2**20:.0f} '
                        f'({theirs[1] / out_bytes:.1f}x out) |')
    print('\n| stage | pass | mmdeform ms | mmcv pytorch ms | speed-up | mmdeform extra MiB '
          '| mmcv pytorch extra MiB |')
    print('|---|---|---|---|---|---|---|')
    print('\n'.join(rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int,
                        help='timed runs per case (median; default 3 on cpu, 20 on cuda)')
    parser.add_argument('--out', help='cuda: folder for benchmark_msda_cuda.json')
    parser.add_argument('--measure-memory', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_memory:
        print(peak_memory_here(*json.loads(args.measure_memory)))
    elif args.device == 'cuda':
        benchmark_cuda(args.repeats or 20, args.out)
    elif args.out:
        parser.error('--out: the CPU comparison prints its table only')
    else:
        benchmark_cpu(args.repeats or 3)


if __name__ == '__main__':
    main()
