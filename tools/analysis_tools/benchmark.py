"""Speed and memory of a detector config: inference at batch 1 and 4, one training step.

    python tools/analysis_tools/benchmark.py CONFIG [--checkpoint CKPT] [--device cpu|cuda]
        [--shape H W] [--inference-batches 1 4] [--bf16] [--repeats N] [--warmup N]
        [--compare-mmdet] [--out report.json]

Inputs are random images of one shape (H, W) with 8 random boxes each, so nothing is resized
or padded. Each stage (inference through ``test_step``: pre-processing, forward and
post-processing; a training step through ``train_step`` with the config's optimizer wrapper:
forward, backward, clipping and the optimizer step) runs ``--warmup`` untimed times, then
``--repeats`` timed times: median, min and max are reported. The last warm-up run measures the
peak memory, as growth over what is held before it (weights, optimizer state, inputs):

- CUDA: ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` before, i.e. tensors.
- CPU: peak resident set size (``VmHWM``) over the resident set before (VmHWM just after
  resetting it through ``/proc/self/clear_refs``), after ``malloc_trim(0)`` has returned the
  memory glibc keeps from freed tensors, so that memory reused by the step counts too. Linux
  with glibc only.

``--bf16`` runs inference under bfloat16 autocast and trains with the config's optimizer under
bfloat16 autocast (mmengine's ``AmpOptimWrapper``; ``CpuAmpOptimWrapper`` on the CPU).

``--compare-mmdet`` also builds mmdet 3.3's equivalent model with the same weights
(:mod:`mmdeform.utils.mmdet_equivalent`) and reports the mmdet / mmdeform ratios (on CUDA it
needs full mmcv: mmdet's model runs mmcv's CUDA kernels). The timed
runs alternate between the two models, so that on a shared machine both see the same load.
"""
import argparse
import copy
import ctypes
import json
import statistics
import time
from typing import Callable, NamedTuple

import torch
import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmdet.structures import DetDataSample
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdeform import mmcv_ext
from mmdeform.apis import init_detector
from mmdeform.utils.mmdet_equivalent import build_mmdet_equivalent
from mmdeform.utils.results_table import results_entry

INFERENCE_BATCHES = (1, 4)
BOXES_PER_IMAGE = 8
MIB = 2**20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', help='weights to load (default: initialized as for '
                        'training; speed does not depend on them)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'),
                        help='image height and width (default: a typical COCO test image)')
    parser.add_argument('--inference-batches', type=int, nargs='+', default=INFERENCE_BATCHES,
                        metavar='N', help='batch sizes of the inference stages')
    parser.add_argument('--bf16', action='store_true', help='bfloat16 autocast in every stage')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per stage')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed runs per stage before the timed ones; the last measures '
                        'the peak memory (with 1, a training step includes creating the '
                        'optimizer state)')
    parser.add_argument('--compare-mmdet', action='store_true',
                        help="also run mmdet's equivalent model with the same weights")
    parser.add_argument('--out', help='write the report as JSON here')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 1:
        parser.error('--repeats and --warmup must be at least 1')
    if min(args.inference_batches) < 1:
        parser.error(f'--inference-batches {args.inference_batches}: each must be at least 1')
    if min(args.shape) < 32:
        parser.error(f'--shape {args.shape[0]} {args.shape[1]}: each side must be at least 32')
    if args.compare_mmdet and args.device == 'cuda' and mmcv_ext.placeholders_in_use():
        parser.error("--compare-mmdet --device cuda: mmdet's model runs mmcv's CUDA kernels "
                     '(deformable attention, focal loss), which mmcv-lite lacks; install full '
                     'mmcv to compare on CUDA')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: CUDA is not available')
    return args


def synthetic_batch(shape, batch_size, num_classes, seed=0):
    """What the data pipeline hands a model: uint8 images and samples with random boxes."""
    h, w = shape
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator))
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        corner = torch.rand(BOXES_PER_IMAGE, 2, generator=generator) * torch.tensor([w, h]) * 0.6
        size = (torch.rand(BOXES_PER_IMAGE, 2, generator=generator) * 0.3 + 0.05) \
            * torch.tensor([w, h])
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corner, corner + size], -1),
            labels=torch.randint(0, num_classes, (BOXES_PER_IMAGE, ), generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def synchronize(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def _proc_status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            name, _, value = line.partition(':')
            if name == field:
                return int(value.split()[0])
    raise RuntimeError(f'no {field} in /proc/self/status')


def peak_memory_mib(fn, device):
    """Peak memory ``fn()`` adds to what is held before it, in MiB (see the module's doc);
    None on a CPU without Linux's /proc or glibc."""
    if device == 'cuda':
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / MIB
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current resident set size
    except OSError:
        return None
    # VmHWM just after the reset, not VmRSS: pages the kernel reclaims meanwhile lower the
    # latter but not the peak.
    before = _proc_status_kib('VmHWM')
    fn()
    return (_proc_status_kib('VmHWM') - before) * 1024 / MIB


class Stage(NamedTuple):
    name: str
    batch_size: int
    training: bool  # the model's mode
    run: Callable[[], None]  # runs the stage once


def stages(model, scope, cfg, args):
    """The stages of one model: inference at each of ``--inference-batches``, then a training
    step at the config's training batch size."""
    num_classes = cfg.model.bbox_head.num_classes
    result = []
    for batch_size in args.inference_batches:
        data = synthetic_batch(args.shape, batch_size, num_classes)

        def infer(data=data):
            with torch.no_grad(), DefaultScope.overwrite_default_scope(scope), \
                    torch.autocast(args.device, torch.bfloat16, enabled=args.bf16):
                model.test_step(data)

        result.append(Stage(f'inference_batch{batch_size}', batch_size, False, infer))

    batch_size = cfg.train_dataloader.batch_size
    data = synthetic_batch(args.shape, batch_size, num_classes)
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    if args.bf16 and args.device == 'cuda':
        optim_cfg.update(type='AmpOptimWrapper', dtype='bfloat16')
    elif args.bf16:
        optim_cfg.type = 'mmdeform.CpuAmpOptimWrapper'
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdeform')):
        optim_wrapper = build_optim_wrapper(model, optim_cfg)

    def train_step():
        with DefaultScope.overwrite_default_scope(scope):
            model.train_step(data, optim_wrapper)

    result.append(Stage(f'train_step_batch{batch_size}', batch_size, True, train_step))
    return result


def run_stage(runs, args):
    """One stage of each model: warm-up runs (the last measuring memory), then timed runs,
    alternating between the models so that they share the machine's ups and downs.

    Args:
        runs (dict[str, tuple[nn.Module, Stage]]): by model name.

    Returns:
        dict: model name -> figures.
    """
    memory, times = {}, {name: [] for name in runs}
    for name, (model, stage) in runs.items():
        model.train(stage.training)
        for _ in range(args.warmup - 1):
            stage.run()
        memory[name] = peak_memory_mib(stage.run, args.device)
    for _ in range(args.repeats):
        for name, (model, stage) in runs.items():
            model.train(stage.training)
            synchronize(args.device)
            start = time.perf_counter()
            stage.run()
            synchronize(args.device)
            times[name].append(time.perf_counter() - start)
    return {name: _figures(times[name], memory[name], stage.batch_size)
            for name, (_, stage) in runs.items()}


def _figures(times, peak_memory_mib, batch_size):
    median = statistics.median(times)
    return dict(batch_size=batch_size, median_ms=median * 1e3, min_ms=min(times) * 1e3,
                max_ms=max(times) * 1e3, images_per_s=batch_size / median,
                peak_memory_mib=peak_memory_mib)


def benchmark(models, cfg, args):
    """model name -> stage name -> figures."""
    per_model = {name: stages(model, scope, cfg, args) for name, model, scope in models}
    results = {name: {} for name in per_model}
    for index, stage in enumerate(per_model['mmdeform']):
        print(f'{stage.name}: {args.warmup} warm-up, {args.repeats} timed run(s) each of '
              f'{" and ".join(per_model)} ...', flush=True)
        runs = {name: (model, per_model[name][index]) for name, model, _ in models}
        for name, figures in run_stage(runs, args).items():
            results[name][stage.name] = figures
    return results


def build_models(args):
    """Ours (and mmdet's equivalent) as (name, model, registry scope)."""
    cfg_options = None
    if args.checkpoint is None:  # initialize, but without downloading pretrained weights
        cfg_options = dict(model=dict(backbone=dict(init_cfg=None)))
    model = init_detector(args.config, args.checkpoint, args.device, cfg_options)
    if args.checkpoint is None:
        torch.manual_seed(0)
        model.init_weights()
    models = [('mmdeform', model, model.cfg.get('default_scope', 'mmdeform'))]
    if args.compare_mmdet:
        models.append(('mmdet', build_mmdet_equivalent(model, model.cfg.model), 'mmdet'))
    return models, model.cfg


def ratios(results):
    """mmdet / mmdeform per stage: time of the medians and peak memory (> 1: ours is faster,
    smaller)."""
    ours, theirs = results['mmdeform'], results['mmdet']
    return {stage: dict(time=theirs[stage]['median_ms'] / ours[stage]['median_ms'],
                        memory=_ratio(theirs[stage]['peak_memory_mib'],
                                      ours[stage]['peak_memory_mib']))
            for stage in ours}


def _ratio(numerator, denominator):
    return numerator / denominator if numerator is not None and denominator else None


def report_table(report):
    """The report as a table's header and rows (and the ratio columns with --compare-mmdet)."""
    names = list(report['results'])
    header = ['stage'] + [f'{name} {column}' for name in names
                          for column in ('median ms (min-max)', 'images/s', 'peak MiB')]
    if 'ratios' in report:
        header += ['mmdet/mmdeform time', 'mmdet/mmdeform memory']
    rows = []
    for stage in report['results'][names[0]]:
        row = [stage.replace('_', ' ')]
        for name in names:
            s = report['results'][name][stage]
            row += [f'{s["median_ms"]:.1f} ({s["min_ms"]:.1f}-{s["max_ms"]:.1f})',
                    f'{s["images_per_s"]:.2f}', _format_mib(s['peak_memory_mib'])]
        if 'ratios' in report:
            ratio = report['ratios'][stage]
            memory = 'n/a' if ratio['memory'] is None else f'{ratio["memory"]:.2f}x'
            row += [f'{ratio["time"]:.2f}x', memory]
        rows.append(row)
    return header, rows


def _format_mib(mib):
    return 'n/a' if mib is None else f'{mib:.0f}'


def main(argv=None):
    args = parse_args(argv)
    # mmengine logs every initialized weight and optimizer option (and warns of each frozen
    # one): timing needs none of it.
    MMLogger.get_instance('mmdeform_benchmark', log_level='ERROR')
    models, cfg = build_models(args)
    report = dict(config=args.config, checkpoint=args.checkpoint, device=args.device,
                  shape=list(args.shape), bf16=args.bf16, warmup=args.warmup,
                  repeats=args.repeats, torch=torch.__version__, threads=torch.get_num_threads())
    report['results'] = benchmark(models, cfg, args)
    if args.compare_mmdet:
        report['ratios'] = ratios(report['results'])
    print(results_entry(__file__, *report_table(report), argv))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == '__main__':
    main()
