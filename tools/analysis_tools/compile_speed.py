"""Inference latency of a detector, eager against ``torch.compile``:

    python tools/analysis_tools/compile_speed.py CONFIG [--shape H W] [--repeats N]
        [--warmup N] [--mode MODE]

Times :class:`mmdeform.deployment.ExportableDetector` (backbone to top-k predictions, batch 1,
one random (H, W) input, no pre-processing) with randomly initialized weights. The compiled
module is compiled whole (``fullgraph=True``: a graph break is an error, not a silent slowdown).
After ``--warmup`` untimed runs of each, the timed runs alternate eager and compiled, so that
both share the machine's ups and downs; median, min and max of the wall time are reported,
the median CPU time of the process (all threads; less sensitive than wall time to other
processes on a shared machine), and the largest difference between the two modules' outputs.
"""
import argparse
import statistics
import time

import torch

from mmdeform.apis import init_detector
from mmdeform.deployment import ExportableDetector
from mmdeform.utils.results_table import results_entry


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Eager vs torch.compile inference latency')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'),
                        help='input height and width (default 512 512)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs of each')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed runs of each first (the compiled one compiles in the first)')
    parser.add_argument('--mode', default='default',
                        help="torch.compile mode, e.g. 'default', 'max-autotune-no-cudagraphs'")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 1:
        parser.error('--repeats and --warmup must be at least 1')
    if min(args.shape) < 32:
        parser.error(f'--shape {args.shape[0]} {args.shape[1]}: each side must be at least 32')
    return args


def build_module(config, shape):
    """The config's detector, initialized as for training (no pretrained download), exportable."""
    model = init_detector(config, cfg_options=dict(model=dict(backbone=dict(init_cfg=None))))
    torch.manual_seed(0)
    model.init_weights()
    return ExportableDetector(model, shape)


def timed(fn, inputs):
    """(wall seconds, CPU seconds of this process, outputs) of ``fn(inputs)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = fn(inputs)
    return time.perf_counter() - wall, time.process_time() - cpu, outputs


def figures(walls, cpus):
    return dict(median_ms=statistics.median(walls) * 1e3, min_ms=min(walls) * 1e3,
                max_ms=max(walls) * 1e3, cpu_median_ms=statistics.median(cpus) * 1e3)


def results_table(eager, compiled, compile_s, difference):
    """One row: each module's wall time, the speed-ups of the medians, compilation time and the
    largest output difference."""
    def wall(result):
        return f'{result["median_ms"]:.0f} ({result["min_ms"]:.0f}-{result["max_ms"]:.0f})'

    header = ['eager wall ms (min-max)', 'compiled wall ms (min-max)', 'wall speed-up',
              'CPU speed-up', 'compilation s', 'largest output difference']
    row = [wall(eager), wall(compiled), f'{eager["median_ms"] / compiled["median_ms"]:.2f}x',
           f'{eager["cpu_median_ms"] / compiled["cpu_median_ms"]:.2f}x', f'{compile_s:.0f}',
           f'{difference:.2g}']
    return header, [row]


def main(argv=None):
    args = parse_args(argv)
    module = build_module(args.config, args.shape)
    compiled = torch.compile(module, fullgraph=True, mode=args.mode)
    inputs = torch.randn(1, 3, *args.shape)
    runs = dict(eager=module, compiled=compiled)
    walls, cpus = {name: [] for name in runs}, {name: [] for name in runs}
    with torch.no_grad():
        compile_s, _, _ = timed(compiled, inputs)
        print(f'first compiled call (compilation): {compile_s:.1f} s', flush=True)
        for _ in range(args.warmup):
            module(inputs)
        for _ in range(args.warmup - 1):
            compiled(inputs)
        outputs = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                wall, cpu, outputs[name] = timed(fn, inputs)
                walls[name].append(wall)
                cpus[name].append(cpu)
    eager, fast = (figures(walls[name], cpus[name]) for name in runs)
    difference = max((a.float() - b.float()).abs().max().item()
                     for a, b in zip(outputs['eager'], outputs['compiled']))
    print(results_entry(__file__, *results_table(eager, fast, compile_s, difference), argv))
    return dict(eager=eager, compiled=fast, compile_s=compile_s, max_difference=difference)


if __name__ == '__main__':
    main()
