"""Detect objects in an image, a folder of images, a glob of images or a video, and draw them:

    python tools/image_demo.py INPUT CONFIG CHECKPOINT --out-dir OUT
        [--batch-size 1] [--score-thr 0.3] [--device cpu]

INPUT is an image file, a folder (its images, sub-folders included, by name), a quoted glob
pattern (``'photos/*.jpg'``) or a video file (each frame). Writes, under OUT:

- ``vis/NAME``: each image with its detections scoring above ``--score-thr``, drawn by mmdet's
  DetLocalVisualizer (the config's ``visualizer``) with the class names and palette of the
  checkpoint, else of the config's test dataset. NAME is the image's path inside the folder
  (inside the deepest folder holding all matches of a glob, or its file name for one image);
  for frame i of video ``clip.mp4`` it is ``clip/i.png``, i with 6 digits.
- ``predictions.json``: all detections in COCO's results format, ``image_id``, ``category_id``,
  ``bbox`` (x, y, width, height in the image's pixels), ``score``, plus ``category_name``.
- ``images.json``: ``images`` (``id``, ``file_name``: NAME, ``width``, ``height``) and
  ``categories`` (``id``, ``name``), as in a COCO annotation file.

Category ids are those of the config's test annotation file where it is here (classes matched
by name), else the labels (index of the class in the class names).
"""
import argparse
import glob
import itertools
import os.path as osp
import sys

import mmdeform  # noqa: F401  (first: it stands in for mmcv-lite's missing mmcv._ext)
import mmcv
import numpy as np
from mmdet.utils.misc import IMG_EXTENSIONS
from mmengine.fileio import dump
from mmengine.registry import DefaultScope
from mmengine.utils import ProgressBar, scandir

from mmdeform.apis import category_ids, inference_detector_batch, init_detector
from mmdeform.evaluation.coco_matches import coco_detections
from mmdeform.registry import VISUALIZERS

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detect objects in images or a video and '
                                     'draw them')
    parser.add_argument('input', help='an image file, a folder, a quoted glob pattern or a video')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True,
                        help='where to write the drawings (vis/), predictions.json and '
                        'images.json')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per forward pass (those of the same size go together)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw the detections scoring above this')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be positive, got {args.batch_size}')
    return args


def open_input(source):
    """The images of ``source`` as (NAME, image file or BGR frame) pairs, and their number
    (a video's frame count as its header gives it)."""
    if osp.isdir(source):
        names = sorted(scandir(source, IMG_EXTENSIONS, recursive=True, case_sensitive=False))
        if not names:
            raise FileNotFoundError(f'no image files ({", ".join(IMG_EXTENSIONS)}) in the '
                                    f'folder {source}')
        return [(name, osp.join(source, name)) for name in names], len(names)
    if osp.isfile(source):
        if osp.splitext(source)[1].lower() in VIDEO_EXTENSIONS:
            return video_frames(source)
        return [(osp.basename(source), source)], 1
    if glob.has_magic(source):
        files = sorted(path for path in glob.glob(source, recursive=True)
                       if osp.isfile(path) and path.lower().endswith(IMG_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f'no image files match {source}')
        root = osp.commonpath([osp.dirname(osp.abspath(path)) for path in files])
        return [(osp.relpath(osp.abspath(path), root), path) for path in files], len(files)
    raise FileNotFoundError(f'no image, folder or video at {source}')


def video_frames(path):
    reader = mmcv.VideoReader(path)
    if not reader.opened or reader.frame_cnt < 1:
        raise OSError(f'cannot read video {path}: OpenCV opens no frames in it')
    stem = osp.splitext(osp.basename(path))[0]
    return ((f'{stem}/{index:06d}.png', frame) for index, frame in enumerate(reader)), \
        reader.frame_cnt


def batches(items, size):
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


def main(argv=None):
    args = parse_args(argv)
    images, num_images = open_input(args.input)
    model = init_detector(args.config, args.checkpoint, device=args.device)
    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope', 'mmdeform')):
        # no storage backends: the drawings go to --out-dir only
        visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    classes = model.dataset_meta['classes']
    cat_ids, ann_file = category_ids(model)

    image_records, predictions, num_drawn = [], [], 0
    progress = ProgressBar(num_images, file=sys.stdout)  # (its default: stdout at import)
    for batch in batches(images, args.batch_size):
        results = inference_detector_batch(model, [image for _, image in batch])
        for (name, image), result in zip(batch, results):
            image_id = len(image_records)
            height, width = result.ori_shape
            image_records.append(dict(id=image_id, file_name=name, width=width, height=height))
            instances = result.pred_instances.cpu().numpy()
            predictions += [dict(detection, category_name=classes[label]) for detection, label in
                            zip(coco_detections(image_id, instances.bboxes, instances.scores,
                                                instances.labels, cat_ids), instances.labels)]
            rgb = mmcv.bgr2rgb(image) if isinstance(image, np.ndarray) \
                else mmcv.imread(image, channel_order='rgb')
            visualizer.add_datasample(name, rgb, data_sample=result, draw_gt=False, show=False,
                                      pred_score_thr=args.score_thr,
                                      out_file=osp.join(args.out_dir, 'vis', name))
            num_drawn += int((instances.scores > args.score_thr).sum())
            progress.update()

    dump(predictions, osp.join(args.out_dir, 'predictions.json'))
    dump(dict(images=image_records,
              categories=[dict(id=i, name=name) for i, name in zip(cat_ids, classes)]),
         osp.join(args.out_dir, 'images.json'))
    print(f'\n{len(image_records)} images, {num_drawn} detections scoring above '
          f'{args.score_thr} drawn to {osp.join(args.out_dir, "vis")}; all {len(predictions)} '
          f'detections in predictions.json, image ids in images.json; category ids: '
          + (f'those of {ann_file}' if ann_file else 'class labels (no annotation file here)'))


if __name__ == '__main__':
    main()
