"""The training path of `make gpu-check` (tools/misc/gpu_check.sh) in one script. It needs
mmengine, mmcv-lite and mmdet (on a GPU machine without network: the kit of `make gpu-kit`).

1. Writes a small shapes dataset (``--num-train`` images; mmdeform.datasets.shapes).
2. Trains the demo config (configs/demo/deformable_detr_tiny_2stage_shapes.py) for ``--iters``
   iterations in fp32, then under bf16 autocast: every loss finite, and the mean loss of the
   last fifth of the run below that of the first fifth.
3. R50 two-stage (configs/deformable_detr_r50_2stage.py) at ``--shape``, batch 2, through
   tools/analysis_tools/benchmark.py: training-step time and peak memory
   (``max_memory_allocated``), inference images/s at batch 1 and 8, in fp32 and bf16.
4. Hugging Face's DeformableDetrForObjectDetection of the same architecture (random weights)
   on the same images: inference images/s at the same batches, fp32 and bf16 (the model's
   forward only: ours includes pre- and post-processing).
5. Trains the demo config twice with ``randomness.deterministic`` (what ``tools/train.py
   --deterministic`` sets) for ``--deterministic-iters`` iterations: the losses must be equal
   bit for bit (an op without a deterministic implementation raises). Last: the runner leaves
   torch's deterministic mode on.

    python tools/misc/gpu_training_check.py --device cuda --work-dir DIR --json F --markdown F
    python tools/misc/gpu_training_check.py --device cpu --tiny ...   (the CPU rehearsal)

Exits non-zero when a check fails; without a GPU, ``--device cuda`` stops after the imports,
saying that it needs a CUDA GPU.
"""
import argparse
import json
import math
import os
import os.path as osp
import runpy
import statistics
import sys
import tempfile
import time
import uuid

import torch
import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmengine.config import Config
from mmengine.runner import Runner
from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

from mmdeform.converters import hf_config_json
from mmdeform.converters.hf_config import config_architecture
from mmdeform.datasets import generate_shapes_dataset
from mmdeform.utils import register_all_modules
from mmdeform.utils.results_table import markdown_table

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'deformable_detr_tiny_2stage_shapes.py')
R50_CONFIG = osp.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py')
BENCHMARK = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark.py')
# (value on a GPU, value in the CPU rehearsal)
SETTINGS = dict(num_train=(256, 4), train_batch=(8, 1), iters=(300, 3), deterministic_iters=(50, 2),
                shape=((800, 1333), (64, 64)), batches=((1, 8), (1, 2)), repeats=(5, 1),
                warmup=(2, 1))
# The rehearsal's R50 two-stage: the same modules, shrunk (ResNet-18, 64 channels, 1 + 1 layers,
# 20 queries, as few proposals: a 64x64 image has 85 pixels over the four levels).
TINY_R50 = '''_base_ = {base!r}
attn = dict(embed_dims=64)
ffn = dict(embed_dims=64, feedforward_channels=128)
model = dict(
    num_queries=20,
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512], out_channels=64),
    encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
    decoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn,
                                              ffn_cfg=ffn)),
    positional_encoding=dict(num_feats=32),
    bbox_head=dict(embed_dims=64),
    test_cfg=dict(max_per_img=20))
'''


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda', choices=['cpu', 'cuda'])
    parser.add_argument('--tiny', action='store_true',
                        help='the sizes of the CPU rehearsal: a few images and iterations')
    parser.add_argument('--work-dir', help='dataset and runs (default: a temporary folder)')
    parser.add_argument('--json', help='write the figures here')
    parser.add_argument('--markdown', help='write the summary tables here')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.exit(3, 'gpu_training_check.py --device cuda needs a CUDA GPU: torch sees none\n')
    for key, values in SETTINGS.items():
        setattr(args, key, values[args.tiny])
    return args


def r50_config(args):
    """R50 two-stage's config file (its rehearsal variant with --tiny)."""
    if not args.tiny:
        return R50_CONFIG
    path = osp.join(args.work_dir, 'r50_2stage_tiny.py')
    with open(path, 'w') as f:
        f.write(TINY_R50.format(base=R50_CONFIG))
    return path


def demo_config(args, data_root, name, precision='fp32', deterministic=False, iters=None):
    """The demo config trained for ``iters`` iterations from seed 0, without validation or
    checkpoints, its learning rate warmed up over the first third."""
    iters = iters or args.iters
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.experiment_name = f'{name}-{uuid.uuid4().hex}'  # runs of one name share a message hub
    loader = cfg.train_dataloader
    loader.dataset.data_root = data_root
    loader.batch_size = args.train_batch
    loader.num_workers = 4 if args.device == 'cuda' else 0
    loader.persistent_workers = loader.num_workers > 0
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    for stage in ('val', 'test'):
        cfg[f'{stage}_dataloader'] = cfg[f'{stage}_cfg'] = cfg[f'{stage}_evaluator'] = None
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                                end=max(1, iters // 3))]
    cfg.default_hooks.checkpoint = None
    cfg.log_level = 'WARNING'  # this script prints what it checked
    cfg.randomness = dict(seed=0, deterministic=deterministic)
    if precision == 'bf16' and args.device == 'cuda':
        cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='bfloat16')
    elif precision == 'bf16':
        cfg.optim_wrapper.type = 'mmdeform.CpuAmpOptimWrapper'
    return cfg


def train_losses(cfg):
    """The total loss of every iteration of a run of ``cfg``, and its seconds per iteration."""
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    losses = [float(x) for x in runner.message_hub.get_scalar('train/loss').data[0]]
    return losses, seconds / len(losses)


def check_training(args, data_root, precision):
    losses, seconds = train_losses(demo_config(args, data_root, f'demo_{precision}', precision))
    fifth = max(1, len(losses) // 5)
    first, last = statistics.mean(losses[:fifth]), statistics.mean(losses[-fifth:])
    # A few iterations of the rehearsal prove the path, not the learning.
    ok = len(losses) == args.iters and all(map(math.isfinite, losses)) and (
        last < first or args.tiny)
    verdict = 'finite (the rehearsal)' if args.tiny else 'finite and falling'
    print(f'demo {precision}: {len(losses)} iterations, {seconds * 1e3:.0f} ms each, loss '
          f'{first:.4f} (first fifth) -> {last:.4f} (last fifth): '
          f'{verdict if ok else "FAILED"}', flush=True)
    return dict(ok=ok, iterations=len(losses), ms_per_iteration=seconds * 1e3,
                loss_first_fifth=first, loss_last_fifth=last, losses=losses)


def check_deterministic(args, data_root):
    runs = [train_losses(demo_config(args, data_root, f'deterministic_{run}',
                                     deterministic=True, iters=args.deterministic_iters))[0]
            for run in range(2)]
    differing = [i for i, (a, b) in enumerate(zip(*runs)) if a != b]
    ok = len(runs[0]) == len(runs[1]) == args.deterministic_iters and not differing
    print(f'deterministic: two runs of {args.deterministic_iters} iterations, '
          + ('losses equal bit for bit' if ok else f'FAILED: losses differ from iteration '
             f'{differing[0] if differing else "?"}'), flush=True)
    return dict(ok=ok, iterations=args.deterministic_iters, first_difference=(
        differing[0] if differing else None), losses=runs)


def benchmark_r50(args, bf16):
    """tools/analysis_tools/benchmark.py's figures of R50 two-stage at args.shape."""
    benchmark = runpy.run_path(BENCHMARK)  # a script, not a module: run in this process
    argv = [r50_config(args), '--device', args.device, '--shape', *map(str, args.shape),
            '--inference-batches', *map(str, args.batches), '--repeats', str(args.repeats),
            '--warmup', str(args.warmup)]
    return benchmark['main'](argv + ['--bf16'] * bf16)['results']['mmdeform']


def hf_model(args):
    """Hugging Face's model of the R50 two-stage config's architecture, random weights."""
    register_all_modules(init_default_scope=False)
    architecture = config_architecture(Config.fromfile(r50_config(args)))
    config = hf_config_json(architecture, [f'class {i}' for i in range(
        architecture['num_classes'])])
    torch.manual_seed(0)
    return DeformableDetrForObjectDetection(DeformableDetrConfig(**config)).to(
        args.device).eval()


def hf_images(args, batch_size):
    """benchmark.py's random images (seed 0), normalized as both models' pre-processing does."""
    generator = torch.Generator().manual_seed(0)
    images = torch.stack([torch.randint(0, 256, (3, *args.shape), dtype=torch.uint8,
                                        generator=generator) for _ in range(batch_size)])
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    return ((images.float() - mean) / std).to(args.device)


def benchmark_hf(args, model, bf16):
    results = {}
    for batch_size in args.batches:
        pixels = hf_images(args, batch_size)

        def infer():
            with torch.no_grad(), torch.autocast(args.device, torch.bfloat16, enabled=bf16):
                model(pixel_values=pixels)

        times = []
        for run in range(args.warmup + args.repeats):
            synchronize(args.device)
            start = time.perf_counter()
            infer()
            synchronize(args.device)
            if run >= args.warmup:
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results[f'inference_batch{batch_size}'] = dict(
            batch_size=batch_size, median_ms=median * 1e3, images_per_s=batch_size / median)
    return results


def synchronize(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def markdown(report):
    """The demo runs, the determinism and the R50 figures as Markdown."""
    training = markdown_table(
        ['demo training', 'iterations', 'ms/iteration', 'loss first fifth', 'loss last fifth',
         'passed'],
        [[p, r['iterations'], f"{r['ms_per_iteration']:.1f}", f"{r['loss_first_fifth']:.4f}",
          f"{r['loss_last_fifth']:.4f}", r['ok']] for p, r in report['training'].items()])
    d = report['deterministic']
    deterministic = (f"Deterministic, two runs of {d['iterations']} iterations: "
                     + ('losses equal bit for bit.' if d['ok'] else
                        f"FAILED (first difference at iteration {d['first_difference']})."))
    h, w = report['shape']
    rows = []
    for precision, ours in report['r50'].items():
        theirs = report['huggingface'][precision]
        for stage, s in ours.items():
            hf = theirs.get(stage)
            rows.append([f"{stage.replace('_', ' ')} {precision}", f"{s['median_ms']:.1f}",
                         f"{s['images_per_s']:.2f}", f"{s['peak_memory_mib']:.0f}",
                         f"{hf['median_ms']:.1f}" if hf else '-',
                         f"{hf['images_per_s']:.2f}" if hf else '-'])
    r50 = markdown_table([f'R50 two-stage at {h}x{w}', 'mmdeform ms', 'mmdeform images/s',
                          'peak MiB', 'Hugging Face ms', 'Hugging Face images/s'], rows)
    return '\n\n'.join([training, deterministic, r50])


def main(argv=None):
    args = parse_args(argv)
    # cuBLAS is deterministic only with a fixed workspace, read when CUDA starts.
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    register_all_modules(init_default_scope=False)
    report = dict(device=args.device, torch=torch.__version__, shape=list(args.shape),
                  gpu=torch.cuda.get_device_name() if args.device == 'cuda' else None,
                  seconds={})
    start = time.perf_counter()

    def timed(phase, fn, *fn_args):
        result = fn(*fn_args)
        report['seconds'][phase] = time.perf_counter() - start - sum(report['seconds'].values())
        print(f'{phase}: {report["seconds"][phase]:.1f} s', flush=True)
        return result

    with tempfile.TemporaryDirectory() as scratch:
        args.work_dir = args.work_dir or scratch
        data_root = osp.join(args.work_dir, 'shapes')
        timed(f'shapes dataset ({args.num_train} images)', generate_shapes_dataset, data_root,
              args.num_train, 1, 0, (224, 320), False)
        report['training'] = {p: timed(f'demo {p}', check_training, args, data_root, p)
                              for p in ('fp32', 'bf16')}
        report['r50'] = {p: timed(f'R50 {p}', benchmark_r50, args, p == 'bf16')
                         for p in ('fp32', 'bf16')}
        model = timed('Hugging Face model', hf_model, args)
        report['huggingface'] = {p: timed(f'Hugging Face {p}', benchmark_hf, args, model,
                                          p == 'bf16') for p in ('fp32', 'bf16')}
        del model
        report['deterministic'] = timed('deterministic', check_deterministic, args, data_root)
    table = markdown(report)
    print(table)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(table + '\n')
    ok = report['deterministic']['ok'] and all(r['ok'] for r in report['training'].values())
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
