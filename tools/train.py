"""Train a detector: ``python tools/train.py CONFIG [options]`` (see ``--help``)."""
import argparse
import os.path as osp

import torch
import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmdeform.registry import RUNNERS
from mmdeform.utils import (add_run_arguments, config_to_resume, load_run_config,
                            parse_run_arguments, record_command_line_settings,
                            setup_cpu_distributed)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (float16 with dynamic loss scaling on '
        'GPU, bfloat16 on CPU)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint or, without one, from the latest in the work '
        'directory, with the config saved there (options given again must match it)')
    add_run_arguments(parser)
    args = parse_run_arguments(parser)
    if args.resume not in (None, 'auto') and '://' not in args.resume \
            and not osp.isfile(args.resume):
        parser.error(f'checkpoint to resume from {args.resume} does not exist')
    return args


def main():
    args = parse_args()

    # Reduce the number of repeated compilations and improve training speed.
    setup_cache_size_limit_of_dynamo()

    cfg = load_run_config(args)

    # enable automatic-mixed-precision training
    if args.amp:
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:
            # mmengine's AmpOptimWrapper asserts a GPU; CPU autocast only does bfloat16.
            print_log('CUDA is not available: --amp trains with bfloat16 autocast on CPU '
                      '(CpuAmpOptimWrapper, no loss scaling)', logger='current')
            cfg.optim_wrapper.type = 'mmdeform.CpuAmpOptimWrapper'

    # enable automatically scaling LR
    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr \
                and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your configuration file.')

    if args.resume is not None:
        try:
            cfg = config_to_resume(cfg, args.config)
        except ValueError as error:
            raise SystemExit(f'error: {error}')

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    setup_cpu_distributed(cfg)
    record_command_line_settings(cfg, args.config)  # for a later --resume

    # build the runner from config
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

    runner.train()
    if torch.distributed.is_initialized():
        # The processes leave together: one that exits while another still works (the first
        # saves the last checkpoint) can abort in gloo (pytorch/pytorch#190489).
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main()
