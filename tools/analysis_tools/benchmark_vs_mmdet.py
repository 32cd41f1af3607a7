"""Times mmdeform's Deformable DETR against mmdet 3.3's with identical weights and inputs, side
by side in one run: inference and one training step (forward, backward, optimizer step).

    python tools/analysis_tools/benchmark_vs_mmdet.py [--variant two_stage] [--batch 2]
        [--size 512 512] [--repeats 5]

The models are the full ResNet-50 configs of each project (random weights: speed does not
depend on them); mmdet's weights are carried over with tools/model_converters/mmdet_to_mmdeform.py.
"""
import argparse
import copy
import importlib.util
import os
import statistics
import time

import mmdet
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = {  # ours, mmdet's
    'multi_scale': ('deformable_detr_r50.py', 'deformable-detr_r50_16xb2-50e_coco.py'),
    'refine': ('deformable_detr_r50_refine.py', 'deformable-detr-refine_r50_16xb2-50e_coco.py'),
    'two_stage': ('deformable_detr_r50_2stage.py',
                  'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'),
}


def build(variant):
    ours_cfg = Config.fromfile(os.path.join(ROOT, 'configs', VARIANTS[variant][0]))
    theirs_cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), '.mim',
                                              'configs', 'deformable_detr',
                                              VARIANTS[variant][1]))
    for cfg in (ours_cfg, theirs_cfg):
        cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        theirs = MMDET_MODELS.build(theirs_cfg.model)
    theirs.init_weights()
    with DefaultScope.overwrite_default_scope('mmdeform'):
        ours = MODELS.build(ours_cfg.model)
    spec = importlib.util.spec_from_file_location(
        'mmdet_to_mmdeform', os.path.join(ROOT, 'tools', 'model_converters',
                                          'mmdet_to_mmdeform.py'))
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    ours.load_state_dict(converter.convert(theirs.state_dict()), strict=True)
    return ours, theirs, ours_cfg.optim_wrapper


def batch(size, batch_size):
    h, w = size
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, 3, h, w, generator=generator)
    samples = []
    for _ in range(batch_size):
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             batch_input_shape=(h, w), scale_factor=(1., 1.)))
        xy = torch.rand(8, 2, generator=generator) * torch.tensor([w, h]) * 0.6
        wh = (torch.rand(8, 2, generator=generator) * 0.3 + 0.05) * torch.tensor([w, h])
        sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], -1),
                                           labels=torch.randint(0, 80, (8, ), generator=generator))
        samples.append(sample)
    return inputs, samples


def time_it(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--variant', choices=VARIANTS, default='two_stage')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'))
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    ours, theirs, optim_cfg = build(args.variant)
    inputs, samples = batch(args.size, args.batch)
    print(f'{args.variant}, batch {args.batch}, {args.size[0]}x{args.size[1]}, torch '
          f'{torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}')

    rows = []
    for name, model, scope in (('mmdeform', ours, 'mmdeform'), ('mmdet', theirs, 'mmdet')):
        optimizer = torch.optim.AdamW(model.parameters(), lr=optim_cfg.optimizer.lr,
                                      weight_decay=optim_cfg.optimizer.weight_decay)

        def infer():
            model.eval()
            with torch.no_grad(), DefaultScope.overwrite_default_scope(scope):
                model.predict(inputs, copy.deepcopy(samples))

        def train_step():
            model.train()
            with DefaultScope.overwrite_default_scope(scope):
                losses = model.loss(inputs, copy.deepcopy(samples))
            optimizer.zero_grad()
            sum(losses.values()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()

        print(f'  timing {name} ...', flush=True)
        rows.append((name, time_it(infer, args.repeats), time_it(train_step, args.repeats)))

    (_, ours_infer, ours_train), (_, mmdet_infer, mmdet_train) = rows
    print('\n| | mmdeform s | mmdet s | speed-up |\n|---|---|---|---|')
    print(f'| inference (batch {args.batch}) | {ours_infer:.2f} | {mmdet_infer:.2f} | '
          f'{mmdet_infer / ours_infer:.2f}x |')
    print(f'| training step (batch {args.batch}) | {ours_train:.2f} | {mmdet_train:.2f} | '
          f'{mmdet_train / ours_train:.2f}x |')


if __name__ == '__main__':
    main()
