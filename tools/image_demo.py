"""Detect objects in one image and draw them:
``python tools/image_demo.py IMAGE CONFIG CHECKPOINT --out-file OUT.png [--score-thr 0.3]``.

The boxes are drawn by mmdet's DetLocalVisualizer (the config's ``visualizer``) with the class
names and palette of the checkpoint, else of the config's test dataset.
"""
import argparse

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
import mmcv
from mmengine.registry import DefaultScope

from mmdeform.apis import inference_detector, init_detector
from mmdeform.registry import VISUALIZERS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detect objects in an image and draw them')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', required=True, help='where to write the drawn image')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw the detections scoring above this')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = init_detector(args.config, args.checkpoint, device=args.device)
    result = inference_detector(model, args.image)
    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope', 'mmdeform')):
        # no storage backends: the drawing goes to --out-file only
        visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.image, channel_order='rgb')
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False, show=False,
                              pred_score_thr=args.score_thr, out_file=args.out_file)
    num_drawn = int((result.pred_instances.scores > args.score_thr).sum())
    print(f'{num_drawn} detections scoring above {args.score_thr} drawn to {args.out_file}')


if __name__ == '__main__':
    main()
