"""Times mmdeform's native multi-scale deformable attention against mmcv's pure-PyTorch
``multi_scale_deformable_attn_pytorch`` in one run, on the same machine and inputs.

Shapes are those of an 800x1216 COCO image in Deformable DETR: levels (100,152), (50,76),
(25,38), (13,19); N=2, M=8, D=32, L=4, K=4. The encoder's queries are all 20197 pixels, the
decoder's 300. Locations are what the model produces: each query's reference point plus offsets
of a few pixels per level.

    python tools/analysis_tools/benchmark_msda.py [--repeats 3] [--device cpu]

Peak memory is the growth of the process's resident set (CPU) or of the CUDA allocator's peak
over the inputs, measured in a fresh process per case so earlier runs leave no cached memory.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)

LEVELS = [(100, 152), (50, 76), (25, 38), (13, 19)]
BATCH, HEADS, HEAD_DIMS, POINTS = 2, 8, 32, 4
QUERIES = {'encoder': None, 'decoder': 300}  # None: every pixel is a query


def implementations():
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

    from mmdeform.ops import ms_deform_attn
    return {
        'mmdeform': ms_deform_attn,
        'mmcv pytorch': lambda value, shapes, starts, locations, weights:
        multi_scale_deformable_attn_pytorch(value, shapes, locations, weights),
    }


def make_inputs(stage, device, batch=BATCH):
    from mmdeform.ops import level_start_index
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


def synchronize(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_case(name, stage, backward, device, repeats):
    fn = implementations()[name]
    inputs = make_inputs(stage, device)
    run_once(fn, inputs, backward)  # warm-up
    times = []
    for _ in range(repeats):
        inputs = make_inputs(stage, device)
        synchronize(device)
        start = time.perf_counter()
        run_once(fn, inputs, backward)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def peak_memory_here(name, stage, backward, device):
    """Bytes of memory the call adds on top of its inputs at its peak (run in a fresh process)."""
    fn = implementations()[name]
    inputs = make_inputs(stage, device)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(fn, inputs, backward)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak resident set size (VmHWM) to the current one
    base = _status_kib('VmRSS')
    run_once(fn, inputs, backward)
    return (_status_kib('VmHWM') - base) * 1024


def peak_memory(name, stage, backward, device):
    command = [sys.executable, __file__, '--measure-memory',
               json.dumps([name, stage, backward, device])]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per case (median)')
    parser.add_argument('--measure-memory', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_memory:
        print(peak_memory_here(*json.loads(args.measure_memory)))
        return

    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats}')
    rows = []
    for stage in QUERIES:
        out_bytes = make_inputs(stage, 'cpu')[0].element_size() * BATCH * HEADS * HEAD_DIMS * (
            QUERIES[stage] or sum(h * w for h, w in LEVELS))
        for backward in (False, True):
            mode = 'forward+backward' if backward else 'forward'
            result = {}
            for name in implementations():
                print(f'  {stage} {mode}: {name} ...', flush=True)
                seconds = time_case(name, stage, backward, args.device, args.repeats)
                memory = peak_memory(name, stage, backward, args.device)
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


if __name__ == '__main__':
    main()
