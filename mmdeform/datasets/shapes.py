"""The embedded demo dataset: synthetic shapes in COCO format, written on the user's machine.

Each image is drawn from its own random stream (seed, split, index), so a dataset is the same
whatever the number of images asked for before it, and any image can be regenerated alone.
Objects are drawn one after the other, later ones over earlier ones; an object's box and area are
those of its pixels still visible at the end (COCO boxes are of the visible part), and an object
hidden beyond ``MIN_VISIBLE`` of its area is left out of the annotations as it would be by a
human annotator.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from mmengine.utils import ProgressBar
from PIL import Image, ImageDraw

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring')
SPLIT_IDS = {'train': 0, 'val': 1}
MIN_VISIBLE = 0.4  # fraction of an object's pixels that must stay visible to be annotated


def _random_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _contrasting_colour(rng: np.random.Generator, behind: np.ndarray,
                        min_distance: float = 120) -> Tuple[int, int, int]:
    """A colour at least ``min_distance`` (L1 over RGB) from the mean colour it covers: the
    shapes are meant to be seen, their difficulty is in size, overlap and clutter."""
    while True:
        colour = _random_colour(rng)
        if np.abs(np.array(colour) - behind).sum() >= min_distance:
            return colour


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One of: a flat colour, a linear gradient, noise, or stripes; HxWx3 uint8."""
    kind = rng.integers(4)
    first, second = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    if kind == 0:
        image = np.broadcast_to(first, (height, width, 3))
    elif kind == 1:
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width]
        t = xs * np.cos(angle) + ys * np.sin(angle)
        t = (t - t.min()) / max(np.ptp(t), 1)
        image = first + t[..., None] * (second - first)
    elif kind == 2:
        image = first + rng.normal(0, rng.uniform(10, 50), (height, width, 3))
    else:
        period = rng.integers(8, 40)
        ys, xs = np.mgrid[0:height, 0:width]
        stripes = ((xs + ys * rng.uniform(-1, 1)) // period % 2).astype(bool)
        image = np.where(stripes[..., None], first, second)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, label: int, width: int, height: int,
                size: float) -> np.ndarray:
    """Boolean HxW mask of one shape of class ``label`` and about ``size`` pixels across."""
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    r = size / 2
    mask = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(mask)
    name = SHAPE_CLASSES[label]
    if name == 'circle':
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif name == 'ring':
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        inner = r * rng.uniform(0.45, 0.65)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif name == 'square':
        draw.regular_polygon((cx, cy, r), 4, rotation=float(rng.uniform(0, 90)), fill=1)
    elif name == 'triangle':
        draw.regular_polygon((cx, cy, r), 3, rotation=float(rng.uniform(0, 120)), fill=1)
    else:  # cross: two bars of a third of its size
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=1)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=1)
    return np.asarray(mask, dtype=bool)


def draw_image(rng: np.random.Generator, width: int, height: int,
               max_objects: int = 6, empty_prob: float = 0.1,
               min_size: float = 16, max_size_frac: float = 0.5
               ) -> Tuple[np.ndarray, List[Dict]]:
    """One image (HxWx3 uint8, RGB) and its objects: dicts of ``label`` and visible ``mask``."""
    image = _background(rng, width, height).copy()
    num_objects = 0 if rng.random() < empty_prob else int(rng.integers(1, max_objects + 1))
    max_size = max_size_frac * min(width, height)
    objects = []
    for _ in range(num_objects):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        # log-uniform sizes: as many small objects as large ones
        size = float(np.exp(rng.uniform(np.log(min_size), np.log(max_size))))
        mask = _shape_mask(rng, label, width, height, size)
        if not mask.any():
            continue
        image[mask] = _contrasting_colour(rng, image[mask].mean(axis=0))
        for earlier in objects:
            earlier['mask'] &= ~mask
        objects.append(dict(label=label, mask=mask, drawn=int(mask.sum())))
    visible = [obj for obj in objects if obj['mask'].sum() >= MIN_VISIBLE * obj['drawn']]
    return image, visible


def _annotation(obj: Dict, ann_id: int, image_id: int) -> Dict:
    ys, xs = np.nonzero(obj['mask'])
    x0, y0 = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0
    return dict(id=ann_id, image_id=image_id, category_id=obj['label'] + 1,
                bbox=[x0, y0, w, h], area=int(obj['mask'].sum()), iscrowd=0)


def generate_split(out_dir: str, split: str, num_images: int, seed: int = 0,
                   size_range: Sequence[int] = (224, 320), show_progress: bool = True) -> str:
    """Write ``num_images`` images to ``out_dir/split/`` and their annotations to
    ``out_dir/annotations/instances_{split}.json``; returns the json's path."""
    if split not in SPLIT_IDS:
        raise ValueError(f'split must be one of {sorted(SPLIT_IDS)}, got {split!r}')
    if num_images < 1:
        raise ValueError(f'num_images must be at least 1, got {num_images}')
    if not 32 <= size_range[0] <= size_range[1]:
        raise ValueError(f'size_range must be (min, max) with 32 <= min <= max, got {size_range}')
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    progress = ProgressBar(num_images) if show_progress else None
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
        width, height = (int(s) for s in rng.integers(size_range[0], size_range[1] + 1, 2))
        image, objects = draw_image(rng, width, height)
        file_name = f'{index:06d}.png'
        Image.fromarray(image).save(osp.join(out_dir, split, file_name))
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=width, height=height))
        for obj in objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id))
        if progress is not None:
            progress.update()
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(SHAPE_CLASSES)]
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    _write_json_atomically(
        ann_file, dict(images=images, annotations=annotations, categories=categories))
    return ann_file


def _write_json_atomically(path: str, content: Dict) -> None:
    # The json is the dataset's "done" marker (make demo skips generation when it exists), so
    # it must never exist half-written.
    with open(path + '.tmp', 'w') as f:
        json.dump(content, f)
    os.replace(path + '.tmp', path)


def generate_shapes_dataset(out_dir: str, num_train: int = 2000, num_val: int = 200,
                            seed: int = 0, size_range: Sequence[int] = (224, 320),
                            show_progress: bool = True) -> Dict[str, str]:
    """Write the train and val splits; returns the annotation file of each split."""
    return {split: generate_split(out_dir, split, num, seed, size_range, show_progress)
            for split, num in (('train', num_train), ('val', num_val))}
