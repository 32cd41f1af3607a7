"""Draw a detector's detections next to the ground truth, on every image of the test split, at
the score threshold that maximizes F1 on that split:

    python tools/analysis_tools/draw_detections.py CONFIG CHECKPOINT --out-dir DIR
        [--score-thr THR] [--iou-thr 0.5] [--max-images N] [--device cpu] [--cfg-options ...]

Detections are matched to the ground truth as COCO's AP matches them (pycocotools, IoU 0.5,
the ``test_evaluator.ann_file`` of the config); the threshold kept is the one at which F1 of those
matches peaks (``mmdeform.evaluation.best_f1_threshold``), unless ``--score-thr`` gives one.
Each image is written as ground truth | detections scoring above the threshold, with the counts
over each half (crowd regions are not drawn).
"""
import argparse
import os
import os.path as osp
import sys

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
import cv2
import mmcv
import numpy as np
import torch
from mmdet.datasets.api_wrappers import COCO
from mmdet.structures import DetDataSample
from mmengine.config import DictAction
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from mmengine.utils import ProgressBar

from mmdeform.apis import init_detector
from mmdeform.datasets.checked_coco import category_ids
from mmdeform.evaluation.coco_matches import box_evaluator, coco_detections, match_images
from mmdeform.evaluation.score_threshold import best_f1_threshold, count_matches
from mmdeform.registry import VISUALIZERS

HEADER = 18  # px of text above each drawing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw ground truth and detections of the test '
                                     'split at the score threshold of best F1')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True, help='where to write the drawings (PNG)')
    parser.add_argument('--score-thr', type=float,
                        help='draw the detections scoring above this (default: the threshold '
                        'of best F1 on the split)')
    parser.add_argument('--iou-thr', type=float, default=0.5,
                        help='IoU at which a detection matches a ground truth (default 0.5)')
    parser.add_argument('--max-images', type=int,
                        help='draw only the first N images (the threshold uses all)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, KEY=VALUE')
    args = parser.parse_args(argv)
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            parser.error(f'file {path} does not exist')
    if not 0 < args.iou_thr < 1:
        parser.error(f'--iou-thr must be between 0 and 1, got {args.iou_thr}')
    if args.max_images is not None and args.max_images < 1:
        parser.error(f'--max-images must be positive, got {args.max_images}')
    return args


def annotation_file(cfg):
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
        else [cfg.test_evaluator]
    for evaluator in evaluators:
        if evaluator.get('ann_file'):
            return evaluator['ann_file']
    raise ValueError('the config has no COCO annotation file to match detections with: set '
                     'test_evaluator.ann_file')


def predict_split(model):
    """The detections (``DetDataSample``) of every image of the config's test split."""
    cfg = model.cfg
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdeform')):
        dataloader = Runner.build_dataloader(cfg.test_dataloader)
    results = []
    progress = ProgressBar(len(dataloader.dataset), file=sys.stdout)
    with torch.no_grad():
        for batch in dataloader:
            results.extend(sample.cpu() for sample in model.test_step(batch))
            progress.update(len(batch['inputs']))
    print()
    return results


def ground_truth(coco, img_id, cat_ids):
    """The image's non-crowd boxes (xyxy) and class indices, as the matching counts them."""
    annotations = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
                   if a['category_id'] in cat_ids and not a.get('iscrowd', 0)]
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in
                          (a['bbox'] for a in annotations)], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([cat_ids.index(a['category_id']) for a in annotations],
                          dtype=torch.long)
    return InstanceData(bboxes=boxes, labels=labels)


def with_header(drawing, texts):
    """``drawing`` (RGB) under a white band with one text centred over each of its halves."""
    band = np.full((HEADER, drawing.shape[1], 3), 255, np.uint8)
    width = drawing.shape[1] // len(texts)
    for i, text in enumerate(texts):
        scale = 0.4
        while scale > 0.2 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                              1)[0][0] > width - 4:
            scale -= 0.05
        size = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0]
        cv2.putText(band, text, (i * width + max((width - size[0]) // 2, 2), HEADER - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, drawing])


def main(argv=None):
    args = parse_args(argv)
    model = init_detector(args.config, args.checkpoint, args.device, args.cfg_options)
    coco = COCO(annotation_file(model.cfg))
    cat_ids = category_ids(coco.dataset['categories'], model.dataset_meta['classes'],
                           annotation_file(model.cfg))
    results = predict_split(model)
    detections = [d for r in results for d in coco_detections(
        r.img_id, r.pred_instances.bboxes.numpy(), r.pred_instances.scores.numpy(),
        r.pred_instances.labels.numpy(), cat_ids)]
    img_ids = [r.img_id for r in results]
    max_dets = [max((len(r.pred_instances) for r in results), default=1)]  # all: all drawn
    matches = {record.img_id: record for record in match_images(
        coco, detections, img_ids, cat_ids, [args.iou_thr], max_dets)}
    params = box_evaluator(coco, cat_ids, [args.iou_thr], max_dets).params

    score_thr = args.score_thr
    if score_thr is None:
        choice = best_f1_threshold(list(matches.values()), params, args.iou_thr)
        score_thr = choice.score_thr
        print(f'Best F1 at IoU {args.iou_thr} on the {len(results)} images: {choice.f1:.3f} '
              f'(precision {choice.precision:.3f}, recall {choice.recall:.3f} of '
              f'{choice.num_gts} objects) at score threshold {score_thr:.3f}')

    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope', 'mmdeform')):
        visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    os.makedirs(args.out_dir, exist_ok=True)
    to_draw = results[:args.max_images]
    progress = ProgressBar(len(to_draw), file=sys.stdout)
    for result in to_draw:
        sample = DetDataSample(metainfo=result.metainfo)
        sample.gt_instances = ground_truth(coco, result.img_id, cat_ids)
        sample.pred_instances = result.pred_instances
        image = mmcv.imread(result.img_path, channel_order='rgb')
        visualizer.add_datasample('detections', image, sample, draw_gt=True, draw_pred=True,
                                  show=False, pred_score_thr=score_thr)
        drawn, matched = count_matches(matches[result.img_id], params, score_thr, args.iou_thr)
        drawing = with_header(visualizer.get_image(), [
            f'ground truth: {len(sample.gt_instances)}',
            f'score > {score_thr:.2f}: {drawn}, {matched} match'])
        name = osp.splitext(osp.basename(result.img_path))[0] + '.png'
        mmcv.imwrite(drawing[..., ::-1], osp.join(args.out_dir, name))
        progress.update()
    print(f'\n{len(to_draw)} drawings (ground truth | detections scoring above {score_thr:.3f}) '
          f'in {args.out_dir}')


if __name__ == '__main__':
    main()
