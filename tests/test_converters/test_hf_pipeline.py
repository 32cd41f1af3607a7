"""What tools/model_converters/mmdeform_to_hf.py writes runs in transformers'
``pipeline('object-detection')`` and detects what our inference API does on the same image file;
hf_to_mmdeform.py names the demo config it came from."""
import os

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from test_huggingface import HF_TO_OURS, OURS_TO_HF, ROOT, build_ours, perturbed
from transformers import pipeline
from transformers.image_transforms import get_size_with_aspect_ratio

from mmdeform.apis import inference_detector, init_detector
from mmdeform.converters import hf_preprocessor_config
from mmdeform.converters.hf_processor import resize_edges

DEMO = os.path.join('configs', 'demo', 'deformable_detr_tiny_2stage_shapes.py')
# The shapes test pipeline's Resize(scale=(384, 160), keep_ratio=True) leaves a 160 x 240 image
# as it is, and so does Hugging Face's processor: the pixels are the same on both sides.
IMAGE_SIZE = (160, 240)


def image_file(path):
    """A PNG (lossless: both sides decode the same pixels) of smooth random colours."""
    noise = np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(noise, (9, 9), 3))
    return str(path)


def threshold_in_a_gap(scores, first=20, last=45):
    """A score threshold halfway across the widest gap between the ``first``-th and the
    ``last``-th highest scores, so that 1e-4 either way keeps the same detections."""
    scores = sorted(scores, reverse=True)[first:last + 1]
    gap, index = max((a - b, i) for i, (a, b) in enumerate(zip(scores, scores[1:])))
    assert gap > 4e-4, 'no gap between the scores wide enough for a threshold'
    return (scores[index] + scores[index + 1]) / 2


def test_pipeline_detects_what_our_inference_does(tmp_path, capsys):
    cfg = Config.fromfile(os.path.join(ROOT, DEMO))
    torch.manual_seed(0)
    model = perturbed(build_ours(cfg))
    with torch.no_grad():  # queries that score classes apart: detections of several labels
        for branch in model.bbox_head.cls_branches:
            branch.weight.add_(torch.randn_like(branch.weight) * 0.3)
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'ours.pth')
    OURS_TO_HF.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'hf'), os.path.join(ROOT, DEMO)])
    image = image_file(tmp_path / 'image.png')

    detector = init_detector(os.path.join(ROOT, DEMO), str(tmp_path / 'ours.pth'), device='cpu')
    classes = detector.dataset_meta['classes']
    ours = inference_detector(detector, image)
    assert ours.metainfo['img_shape'] == IMAGE_SIZE
    threshold = threshold_in_a_gap(ours.pred_instances.scores.tolist())
    keep = ours.pred_instances.scores > threshold
    expected = [(classes[label], score, box) for label, score, box in zip(
        ours.pred_instances.labels[keep].tolist(), ours.pred_instances.scores[keep].tolist(),
        ours.pred_instances.bboxes[keep].tolist())]

    detections = pipeline('object-detection', model=str(tmp_path / 'hf'))(image,
                                                                       threshold=threshold)
    height, width = IMAGE_SIZE
    # The pipeline's boxes are whole pixels (truncated), not clipped to the image; ours are
    # clipped (as mmdet's): clipped here, they are within a pixel of ours.
    found = [(d['label'], d['score'], [min(max(d['box'][k], 0), size) for k, size in (
        ('xmin', width), ('ymin', height), ('xmax', width), ('ymax', height))])
        for d in detections]
    assert len(found) == len(expected) >= 5
    assert len({label for label, _, _ in expected}) > 1, expected
    for label, score, box in expected:
        match = next((d for d in found if d[0] == label and abs(d[1] - score) <= 1e-4
                      and max(abs(a - b) for a, b in zip(d[2], box)) <= 1), None)
        assert match is not None, (label, score, box, found)
        found.remove(match)

    # back to ours: the tool names the demo config, which builds the same model
    HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'back.pth')])
    assert f'It is {DEMO}' in capsys.readouterr().out


def test_the_resized_sizes():
    """The exported size gives the size our test pipeline does for the test's image; where the
    exact size of the computed side has a fraction of 0.5 or more they differ by a pixel, mmcv
    rounding and Hugging Face truncating it (a 480 x 640 COCO image: 800 x 1067 for us)."""
    for config, (height, width), differs in (
            (DEMO, IMAGE_SIZE, False), (DEMO, (200, 300), False),
            ('configs/deformable_detr_r50.py', (480, 640), True)):
        cfg = Config.fromfile(os.path.join(ROOT, config))
        size = hf_preprocessor_config(cfg)['size']
        short, long = resize_edges(cfg)
        ours_w, ours_h = mmcv.rescale_size((width, height), (long, short))
        theirs = get_size_with_aspect_ratio((height, width), size['shortest_edge'],
                                            size['longest_edge'])
        assert (theirs != (ours_h, ours_w)) == differs, (config, theirs, (ours_h, ours_w))
    assert (ours_h, ours_w) == (800, 1067) and theirs == (800, 1066)


def test_preprocessor_config_matches_the_data_preprocessor():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50.py'))
    config = hf_preprocessor_config(cfg)
    assert config['size'] == dict(shortest_edge=800, longest_edge=1333)
    # mmdet's 0..255 ImageNet statistics are Hugging Face's 0..1 ones
    np.testing.assert_allclose(config['image_mean'], [0.485, 0.456, 0.406], atol=1e-6)
    np.testing.assert_allclose(config['image_std'], [0.229, 0.224, 0.225], atol=1e-6)
    assert config['rescale_factor'] == 1 / 255 and config['do_resize'] and config['do_pad']


@pytest.mark.parametrize('change, message', [
    (dict(model=dict(data_preprocessor=dict(bgr_to_rgb=False))), 'BGR'),
    (dict(model=dict(data_preprocessor=dict(pad_size_divisor=32))), 'multiple of 32'),
    (dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(800, 800), keep_ratio=False),
        dict(type='PackDetInputs')]))), 'keep_ratio'),
])
def test_what_the_processor_cannot_do_is_refused(change, message):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50.py'))
    cfg.merge_from_dict(change)
    with pytest.raises(ValueError, match=message):
        hf_preprocessor_config(cfg)
