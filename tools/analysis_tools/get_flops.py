"""FLOPs and parameters of a config's detector on one image of a given size:

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--cfg-options KEY=VALUE ...]

FLOPs count one multiply-add as one FLOP (mmengine / fvcore, as mmdet's get_flops), the
deformable attention op included (see mmdeform/utils/flops.py). The backbone is built without
its pretrained weights: nothing is downloaded, and the counts do not depend on the weights.
"""
import argparse
import os.path as osp

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope

from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules
from mmdeform.utils.flops import detector_complexity
from mmdeform.utils.results_table import results_entry


def parse_args():
    parser = argparse.ArgumentParser(description='Count the FLOPs and parameters of a detector')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1200], metavar=('H', 'W'),
                        help='input image height and width (default: 800 1200, about a COCO '
                        'val image after the test resize)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the config, in xxx=yyy format, e.g. '
        'model.encoder.num_layers=3')
    args = parser.parse_args()
    if not osp.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    if min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    return args


def build_detector(cfg):
    register_all_modules(init_default_scope=False)
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdeform')):
        return MODELS.build(cfg.model)


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    complexity = detector_complexity(build_detector(cfg), args.shape)
    shape, params = f'{args.shape[0]}x{args.shape[1]}', f'{complexity["params"] / 1e6:.2f}M'
    flops = f'{complexity["flops"] / 1e9:.2f}G'
    print(f'Input shape: {shape}\nParams: {params}\nFLOPs: {flops}\n')
    print(results_entry(__file__, ['config', 'input', 'params', 'FLOPs'],
                        [[f'`{args.config}`', shape, params, flops]]))


if __name__ == '__main__':
    main()
