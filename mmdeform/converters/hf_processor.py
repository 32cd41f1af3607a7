"""Hugging Face's ``preprocessor_config.json`` for ``DeformableDetrImageProcessor`` that does what
one of our configs does to an image before the model: its test pipeline's ``Resize`` and its
data preprocessor's normalisation.

- Resize: our ``Resize(scale=(long, short), keep_ratio=True)`` scales the image by
  ``min(long / long side, short / short side)``; Hugging Face's
  ``size={'shortest_edge': short, 'longest_edge': long}`` does the same. mmcv rounds both sides
  to the nearest pixel, Hugging Face rounds the side it computes down; the two sizes differ by a
  pixel when that side's fraction is 0.5 or more. Both interpolate bilinearly, mmcv with
  OpenCV, Hugging Face with PIL or torchvision, which antialias when shrinking: pixels are equal
  only where neither resizes.
- Channels: we load images in BGR and the data preprocessor turns them to RGB
  (``bgr_to_rgb``); Hugging Face takes RGB images.
- Normalisation: our mean and std are on the 0..255 scale, Hugging Face's after rescaling to
  0..1.
- Padding: one image is not padded on either side; a batch is padded to its largest image, our
  ``pad_size_divisor`` must be 1 for the same padding.
"""
RESCALE = 1 / 255
PIL_BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, as preprocessor_config.json spells it


def resize_edges(cfg):
    """(short, long) edge lengths of the ``Resize`` step of the config's test pipeline.

    Raises:
        ValueError: no such step, or one that Hugging Face's processor cannot do.
    """
    resizes = [step for step in cfg.test_dataloader.dataset.pipeline
               if step['type'].split('.')[-1] == 'Resize']
    if len(resizes) != 1:
        raise ValueError(f'the test pipeline of {cfg.filename} has {len(resizes)} Resize steps; '
                         "Hugging Face's image processor does one, Resize(scale=(long, short), "
                         'keep_ratio=True)')
    resize = resizes[0]
    scale = resize.get('scale')
    if not resize.get('keep_ratio', False) or not isinstance(scale, (tuple, list)):
        raise ValueError(f'the test pipeline of {cfg.filename} resizes with {dict(resize)}; '
                         "Hugging Face's image processor keeps the aspect ratio with two edge "
                         'lengths: Resize(scale=(long, short), keep_ratio=True)')
    return min(scale), max(scale)


def hf_preprocessor_config(cfg):
    """preprocessor_config.json (a dict) of the config's test-time image processing.

    Raises:
        ValueError: naming what Hugging Face's processor cannot do the same way.
    """
    preprocessor = cfg.model.data_preprocessor
    if not preprocessor.get('bgr_to_rgb', False):
        raise ValueError(f'the model of {cfg.filename} takes BGR images (its data_preprocessor '
                         "has no bgr_to_rgb=True); Hugging Face's image processor gives RGB")
    if preprocessor.get('pad_size_divisor', 1) != 1:
        raise ValueError(f'the data_preprocessor of {cfg.filename} pads to a multiple of '
                         f"{preprocessor.pad_size_divisor}; Hugging Face's image processor "
                         'pads to the largest image of a batch (pad_size_divisor=1)')
    short, long = resize_edges(cfg)
    return dict(
        image_processor_type='DeformableDetrImageProcessor', format='coco_detection',
        do_convert_annotations=True,
        do_resize=True, size=dict(shortest_edge=short, longest_edge=long), resample=PIL_BILINEAR,
        do_rescale=True, rescale_factor=RESCALE,
        do_normalize=True, image_mean=[value * RESCALE for value in preprocessor.mean],
        image_std=[value * RESCALE for value in preprocessor.std],
        do_pad=True)
