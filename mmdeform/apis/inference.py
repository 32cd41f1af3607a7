"""Load a detector from a config and checkpoint and run it on images.

Building and running reuse mmdet: the model comes from the registry, and
:func:`inference_detector` is mmdet's (the config's test pipeline, one image at a time;
:func:`inference_detector_batch` runs images of the same size together). What is
ours: the registries of mmdeform, the checkpoint read with torch's safe unpickler
(:func:`mmdeform.utils.load_checkpoint_file`) and refused where it does not fit the config
(:func:`mmdeform.utils.checkpoint_fit.check_checkpoint_fits`), and class names taken from the
checkpoint, else from the config's test dataset (mmdet falls back to COCO's).
"""
import copy
import os
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.apis import inference_detector as mmdet_inference_detector
from mmdet.structures import DetDataSample
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.fileio import load
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmengine.runner import load_state_dict
from PIL import Image
from torch import nn

from mmdeform.registry import MODELS
from mmdeform.utils import load_checkpoint_file, register_all_modules
from mmdeform.datasets.checked_coco import category_ids as coco_category_ids
from mmdeform.utils.checkpoint_fit import (check_checkpoint_fits, checkpoint_state_dict,
                                           metainfo_of_test_dataset, saved_dataset_meta,
                                           test_dataset)

ImageType = Union[str, Path, np.ndarray, Image.Image]
ImagesType = Union[ImageType, Sequence[ImageType]]
EXPECTED_ARRAY = ('a uint8 array in BGR order of shape (H, W, 3), or a grayscale uint8 array of '
                  'shape (H, W) or (H, W, 1)')
# PIL's modes of 8 bits per channel, which convert('RGB') keeps exact (the others hold 16 or 32
# bits and would be clipped)
PIL_8_BIT_MODES = ('1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA', 'RGBa', 'RGBX', 'CMYK',
                   'YCbCr', 'LAB', 'HSV')


def init_detector(config: Union[str, Path, Config],
                  checkpoint: Optional[str] = None,
                  device: str = 'cpu',
                  cfg_options: Optional[dict] = None) -> nn.Module:
    """A detector in eval mode, built from a config, with a checkpoint's weights.

    Args:
        config (str | Path | Config): config file or loaded config.
        checkpoint (str, optional): a local checkpoint; without one the weights stay as built
            (random).
        device (str): where the model goes. Defaults to 'cpu'.
        cfg_options (dict, optional): overrides merged into the config.

    Returns:
        nn.Module: the model, with ``model.cfg`` (the config) and ``model.dataset_meta``
        (``classes`` and ``palette``: the checkpoint's, else the config's test dataset's).
    """
    register_all_modules(init_default_scope=False)
    cfg = _load_config(config, cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdeform')):
        model = MODELS.build(cfg.model)
        model.dataset_meta = metainfo_of_test_dataset(cfg)
    # SyncBN of multi-GPU training cannot run in a single process.
    model = revert_sync_batchnorm(model)
    if checkpoint is not None:
        saved = load_checkpoint_file(str(checkpoint))
        check_checkpoint_fits(saved, model, checkpoint, cfg.filename)
        load_state_dict(model, checkpoint_state_dict(saved), strict=True)
        model.dataset_meta.update(saved_dataset_meta(saved))
    model.cfg = cfg
    return model.to(device).eval()


def inference_detector(model: nn.Module,
                       imgs: ImagesType) -> Union[DetDataSample, list]:
    """Detections of one image or a list of images.

    Args:
        model (nn.Module): from :func:`init_detector`.
        imgs (str | Path | np.ndarray | PIL.Image.Image | list): one image or a list: image
            files; uint8 arrays as mmcv/cv2 load them, (H, W, 3) in BGR order, or grayscale
            (H, W) or (H, W, 1); or PIL images (RGB, grayscale, RGBA, palette... of 8 bits per
            channel). Other dtypes (e.g. float arrays in 0..1) and shapes are refused.

    Returns:
        DetDataSample | list[DetDataSample]: one per image (a list for a list), whose
        ``pred_instances`` hold ``bboxes`` (xyxy, pixels of the original image), ``scores`` and
        ``labels``.
    """
    is_batch = isinstance(imgs, (list, tuple))
    images = [_checked_image(img) for img in (imgs if is_batch else [imgs])]
    # mmdet picks the loading transform by the first image
    if len({isinstance(img, np.ndarray) for img in images}) > 1:
        raise TypeError('a list of images must be all file names or all arrays and PIL images, '
                        'not a mix')
    if not images:
        return []
    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope', 'mmdeform')):
        # our pipeline: mmdet's edits the model's config for arrays, breaking later file calls
        pipeline = _test_pipelines(model.cfg)[isinstance(images[0], np.ndarray)]
        results = mmdet_inference_detector(model, images, test_pipeline=pipeline)
    return results if is_batch else results[0]


def inference_detector_batch(model: nn.Module,
                             imgs: Sequence[Union[str, np.ndarray]]) -> list:
    """Detections of a list of images, run through the model in batches: equal to
    :func:`inference_detector`'s, faster where the images share a size.

    The images go through the config's test pipeline; those of the same size after it go
    through the model together. Images of different sizes go through separately, because
    padding one to the size of another changes its detections (the backbone sees the padding).

    Args:
        model (nn.Module): from :func:`init_detector`.
        imgs (list): image files and/or images as loaded by mmcv/cv2 (HxWx3 BGR uint8).

    Returns:
        list[DetDataSample]: one per image, in order, as :func:`inference_detector` gives them.
    """
    images = [_checked_image(img) for img in imgs]
    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope', 'mmdeform')):
        pipelines = _test_pipelines(model.cfg)
        inputs = [pipelines[isinstance(img, np.ndarray)](_pipeline_input(img)) for img in images]
    same_size = defaultdict(list)
    for index, data in enumerate(inputs):
        same_size[tuple(data['inputs'].shape)].append(index)
    results = [None] * len(inputs)
    for indices in same_size.values():
        with torch.no_grad():
            batch_results = model.test_step(pseudo_collate([inputs[i] for i in indices]))
        for index, result in zip(indices, batch_results):
            results[index] = result
    return results


def _test_pipelines(cfg):
    """The config's test pipeline for image files (False) and for arrays (True), the latter
    loading them as mmdet's inference_detector does."""
    for_files = get_test_pipeline_cfg(cfg)
    for_arrays = copy.deepcopy(for_files)
    for_arrays[0].type = 'mmdet.LoadImageFromNDArray'
    return {False: Compose(for_files), True: Compose(for_arrays)}


def _pipeline_input(img):
    # img_id as mmdet's inference_detector sets it
    return dict(img=img, img_id=0) if isinstance(img, np.ndarray) else dict(img_path=img, img_id=0)


def result_to_arrays(result: DetDataSample, score_thr: float = 0.0) -> dict:
    """The detections of one image scoring above ``score_thr`` (as mmdet's visualizer draws
    them) as numpy arrays.

    Returns:
        dict: ``bboxes`` (n, 4) float32 xyxy, ``scores`` (n,) float32, ``labels`` (n,) int64,
        highest score first.
    """
    instances = result.pred_instances
    keep = instances.scores > score_thr
    order = instances.scores[keep].argsort(descending=True)
    return dict(bboxes=instances.bboxes[keep][order].cpu().numpy().astype(np.float32),
                scores=instances.scores[keep][order].cpu().numpy().astype(np.float32),
                labels=instances.labels[keep][order].cpu().numpy().astype(np.int64))


def category_ids(model: nn.Module) -> Tuple[list, Optional[str]]:
    """The category id of each class of ``model``, by label, and the file it comes from.

    Where the config's test annotation file is here, a class's id is that of the category of
    the same name in it, as the dataset maps them, and the file is returned. Else a class's id is
    its label, its index in ``model.dataset_meta['classes']``, and the file is None.
    """
    classes = model.dataset_meta['classes']
    ann_file = getattr(test_dataset(model.cfg), 'ann_file', None)
    if not ann_file or not os.path.isfile(ann_file):
        return list(range(len(classes))), None
    return coco_category_ids(load(ann_file)['categories'], classes, ann_file), ann_file


def _load_config(config, cfg_options):
    if isinstance(config, (str, Path)):
        if not os.path.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        config = Config.fromfile(config)
    elif isinstance(config, Config):
        config = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a file name or a Config, got {type(config)}')
    if cfg_options is not None:
        config.merge_from_dict(cfg_options)
    return config


def _checked_image(img):
    """A file name as a str, any other image as a uint8 BGR (H, W, 3) array."""
    if isinstance(img, Image.Image):
        return _pil_to_bgr(img)
    if isinstance(img, np.ndarray):
        return _bgr_array(img)
    if not isinstance(img, (str, Path)):
        raise TypeError(f'images must be file names, numpy arrays or PIL images, got '
                        f'{type(img).__name__}')
    if not os.path.isfile(img):
        raise FileNotFoundError(f'image file not found: {img}')
    return str(img)


def _bgr_array(img):
    if img.dtype != np.uint8:
        hint = (' (a float image in 0..1 converts with (img * 255).round().astype(np.uint8))'
                if np.issubdtype(img.dtype, np.floating) else '')
        raise TypeError(f'expected {EXPECTED_ARRAY}, got a {img.dtype} array{hint}')
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return mmcv.gray2bgr(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected {EXPECTED_ARRAY}, got an array of shape {img.shape}')
    return img


def _pil_to_bgr(image):
    if image.mode not in PIL_8_BIT_MODES:
        raise ValueError(f'expected a PIL image of 8 bits per channel (mode RGB, L, RGBA, ...), '
                         f'got mode {image.mode!r}: scale it to 0..255 and convert it to RGB')
    return mmcv.rgb2bgr(np.asarray(image.convert('RGB')))
