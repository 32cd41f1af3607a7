"""Test (and evaluate) a detector: ``python tools/test.py CONFIG CHECKPOINT [options]``.

A checkpoint that does not fit the config's model is refused before anything is evaluated.

The inference speed (images/s, ms/image) is reported next to the metrics.
"""
import argparse
import os.path as osp

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmdeform.registry import RUNNERS
from mmdeform.utils import (add_run_arguments, load_run_config, parse_run_arguments,
                            setup_cpu_distributed)
from mmdeform.utils.checkpoint_fit import check_checkpoint_file_fits


def parse_args():
    parser = argparse.ArgumentParser(description='MMDeform test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', type=str, help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved; a relative one goes into '
        'WORK_DIR/TIMESTAMP/. The Epoch(test) lines of the log show the progress')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    add_run_arguments(parser)
    args = parse_run_arguments(parser)
    # URLs (https://, torchvision://, s3://, ...) are mmengine's to fetch.
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file {args.checkpoint} does not exist')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')
    return args


def main():
    args = parse_args()

    # Reduce the number of repeated compilations and improve testing speed.
    setup_cache_size_limit_of_dynamo()

    cfg = load_run_config(args)

    # The Runner would load what fits, log the rest and evaluate a half-initialised model.
    check_checkpoint_file_fits(args.checkpoint, cfg)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    # report the inference speed next to the metrics
    custom_hooks = cfg.get('custom_hooks', [])
    if not any(hook.get('type') in ('InferenceSpeedHook', 'mmdeform.InferenceSpeedHook')
               for hook in custom_hooks):
        cfg.custom_hooks = custom_hooks + [dict(type='mmdeform.InferenceSpeedHook')]

    setup_cpu_distributed(cfg)

    # build the runner from config
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

    if args.show_dir:
        # DetVisualizationHook puts a relative --show-dir into the run's folder of the work dir
        score_thr = cfg.default_hooks.visualization.get('score_thr', 0.3)
        print_log(f'drawing the detections scoring above {score_thr} to '
                  f'{osp.join(runner.work_dir, runner.timestamp, args.show_dir)}',
                  logger='current')

    # add `DumpResults` dummy metric
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))

    runner.test()


if __name__ == '__main__':
    main()
