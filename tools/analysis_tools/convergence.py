"""Convergence study on the embedded shapes dataset: COCO AP against training iterations for
mmdet's DETR and our Deformable DETR (plain, + iterative box refinement, + two-stage), at equal
budget: the same data, batch, optimizer, schedule, backbone, width, depth and number of queries.

``python tools/analysis_tools/convergence.py --iters 1250 --val-interval 250``

Each model trains in its own process (tools/train.py) into WORK_DIR/<model>; a model whose run
is complete is not trained again, so an interrupted study picks up where it stopped.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
from mmengine.config import Config, DictAction  # noqa: E402

from mmdeform.utils import read_scalars  # noqa: E402
from mmdeform.utils.results_table import results_entry  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
from plot_logs import plot_curves  # noqa: E402

DEMO_CONFIG = osp.join(ROOT, 'configs/demo/deformable_detr_tiny_shapes.py')
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50')


def parse_args():
    parser = argparse.ArgumentParser(description='AP against iterations, DETR vs ours')
    parser.add_argument('--work-dir', default='work_dirs/convergence')
    parser.add_argument('--iters', type=int, default=1250, help='training iterations per model')
    parser.add_argument('--val-interval', type=int, default=250, help='iterations between evals')
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--out', default=None, help='the plot (default WORK_DIR/convergence.png)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='config changes (key=value) for every model, e.g. '
                        'optim_wrapper.optimizer.lr=1e-4; give them another --work-dir, as '
                        'a model trained there already is not trained again')
    return parser.parse_args()


def deformable_detr(**variant):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.update(variant)
    return cfg


def mmdet_detr():
    """mmdet's DETR config with the demo model's backbone, width, depth, queries and classes
    (its single C5 level through the neck), on the demo's data and optimizer."""
    import mmdet
    cfg = Config.fromfile(DEMO_CONFIG)
    detr = Config.fromfile(osp.join(osp.dirname(mmdet.__file__),
                                    '.mim/configs/detr/detr_r50_8xb2-150e_coco.py')).model
    ours = cfg.model
    dims = ours.bbox_head.embed_dims
    detr.backbone = dict(ours.backbone, out_indices=(3, ))
    detr.neck.update(in_channels=ours.neck.in_channels[-1:], out_channels=dims)
    for part in ('encoder', 'decoder'):
        detr[part].num_layers = getattr(ours, part).num_layers
        for attn in ('self_attn_cfg', 'cross_attn_cfg'):
            if attn in detr[part].layer_cfg:
                detr[part].layer_cfg[attn].update(embed_dims=dims, dropout=0.0)
        detr[part].layer_cfg.ffn_cfg.update(
            embed_dims=dims, ffn_drop=0.0,
            feedforward_channels=ours.encoder.layer_cfg.ffn_cfg.feedforward_channels)
    detr.positional_encoding.num_feats = dims // 2
    detr.bbox_head.update(num_classes=ours.bbox_head.num_classes, embed_dims=dims)
    detr.num_queries = ours.num_queries
    detr.test_cfg = ours.test_cfg
    cfg.model = in_scope(detr.to_dict(), 'mmdet')
    return cfg


def in_scope(cfg, scope):
    """``cfg`` with every unscoped ``type`` prefixed by ``scope.``: mmdet's DETR must get mmdet's
    assigner and match costs, not ours of the same names."""
    if isinstance(cfg, dict):
        return {key: (f'{scope}.{value}' if key == 'type' and isinstance(value, str)
                      and '.' not in value else in_scope(value, scope))
                for key, value in cfg.items()}
    if isinstance(cfg, list):
        return [in_scope(item, scope) for item in cfg]
    return cfg


MODELS = {
    'detr': mmdet_detr,
    'deformable_detr': deformable_detr,
    'refine': lambda: deformable_detr(with_box_refine=True),
    'two_stage': lambda: deformable_detr(with_box_refine=True, as_two_stage=True),
}
LABELS = {
    'detr': 'DETR (mmdet)',
    'deformable_detr': 'Deformable DETR',
    'refine': '+ iterative box refinement',
    'two_stage': '++ two-stage',
}


def study_config(name, iters, val_interval, cfg_options=None):
    """The config model ``name`` trains with: at the budget, with ``cfg_options`` applied."""
    cfg = iteration_budget(MODELS[name](), iters, val_interval)
    cfg.merge_from_dict(cfg_options or {})
    return cfg


def iteration_budget(cfg, iters, val_interval):
    """Train for ``iters`` iterations, evaluating every ``val_interval``, with the demo's lr
    schedule: its epoch-based schedulers stretched to the same fractions of the iterations,
    its iteration-based ones (the warm-up) as they are."""
    iters_per_epoch = iters / cfg.train_cfg.max_epochs
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=val_interval)
    cfg.param_scheduler = [in_iterations(scheduler, iters_per_epoch)
                           for scheduler in cfg.param_scheduler]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=iters)
    cfg.default_hooks.logger.log_metric_by_epoch = False
    cfg.log_processor.by_epoch = False
    return cfg


def in_iterations(scheduler, iters_per_epoch):
    """An epoch-based mmengine scheduler config as an iteration-based one, ``iters_per_epoch``
    iterations to an epoch."""
    if not scheduler.get('by_epoch', True):
        return scheduler
    scheduler = dict(scheduler, by_epoch=False)
    scheduler.pop('convert_to_iter_based', None)
    for key in ('begin', 'end', 'T_max'):
        if scheduler.get(key) is not None:
            scheduler[key] = round(scheduler[key] * iters_per_epoch)
    if 'milestones' in scheduler:
        scheduler['milestones'] = [round(m * iters_per_epoch) for m in scheduler['milestones']]
    return scheduler


def train(name, cfg, work_dir):
    """Train one model in its own process; skipped when its final checkpoint exists."""
    run_dir = osp.join(work_dir, name)
    if osp.isfile(osp.join(run_dir, f'iter_{cfg.train_cfg.max_iters}.pth')):
        print(f'{name}: already trained in {run_dir}')
        return run_dir
    os.makedirs(run_dir, exist_ok=True)
    config_file = osp.join(run_dir, f'{name}.py')
    cfg.dump(config_file)
    print(f'{name}: training {cfg.train_cfg.max_iters} iterations in {run_dir}', flush=True)
    subprocess.run([sys.executable, osp.join(ROOT, 'tools/train.py'), config_file,
                    '--work-dir', run_dir, '--resume'], check=True)
    return run_dir


def results_table(runs):
    """AP / AP50 of each run (label, curves) at each iteration evaluated, as a table's header
    and rows."""
    iters = runs[0][1][METRICS[0]].iters
    header = ['model'] + [f'{it} iterations' for it in iters]
    rows = [[label] + [' / '.join(_value_at(curves[metric], it) for metric in METRICS)
                       for it in iters]
            for label, curves in runs]
    return header, rows


def _value_at(curve, iteration):
    values = curve.values[curve.iters == iteration]
    return f'{values[-1]:.3f}' if len(values) else 'n/a'


def main():
    args = parse_args()
    runs = []
    for name in args.models:
        cfg = study_config(name, args.iters, args.val_interval, args.cfg_options)
        curves = read_scalars(train(name, cfg, args.work_dir))
        runs.append((LABELS[name], curves))
        print(f'{LABELS[name]}: ' + ', '.join(
            f'{metric} {curves[metric].values[-1]:.3f}' for metric in METRICS))
    figure = plot_curves(runs, list(METRICS), title=f'shapes val, {args.iters} iterations')
    out = args.out or osp.join(args.work_dir, 'convergence.png')
    figure.savefig(out, dpi=120)
    print(f'plot: {out}\n\nCOCO AP / AP50 on the shapes val split:')
    print(results_entry(__file__, *results_table(runs)))


if __name__ == '__main__':
    main()
