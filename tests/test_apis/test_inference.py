"""mmdeform.apis: a tiny detector loaded from a config and checkpoint gives, for image files and
arrays alike, what its own predict gives on the same hand-preprocessed input."""
import os

import mmcv
import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from PIL import Image

from mmdeform.apis import (inference_detector, inference_detector_batch, init_detector,
                           result_to_arrays)
from mmdeform.utils import save_checkpoint_file

TINY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tiny_deformable_detr.py')
CLASSES = tuple(f'thing{i}' for i in range(80))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint of the tiny model with initialized weights and its own class names."""
    torch.manual_seed(0)
    model = init_detector(TINY_CONFIG)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    save_checkpoint_file(dict(state_dict=model.state_dict(),
                              meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return path, model.state_dict()


@pytest.fixture(scope='module')
def model(checkpoint):
    return init_detector(TINY_CONFIG, checkpoint[0])


@pytest.fixture
def image_file(tmp_path):
    """A 60x80 image on disk and as loaded (BGR)."""
    image = np.random.RandomState(0).randint(0, 256, (60, 80, 3), dtype=np.uint8)
    path = str(tmp_path / 'image.png')
    mmcv.imwrite(image, path)
    return path, image


def test_init_detector_loads_weights_and_class_names(model, checkpoint):
    state_dict = model.state_dict()
    assert state_dict.keys() == checkpoint[1].keys()
    for key, value in checkpoint[1].items():
        assert torch.equal(state_dict[key], value), key
    assert model.dataset_meta['classes'] == CLASSES
    assert not model.training


def test_class_names_from_config_without_checkpoint():
    model = init_detector(TINY_CONFIG, cfg_options=dict(model=dict(num_queries=7)))
    assert tuple(model.dataset_meta['classes']) == CocoDataset.METAINFO['classes']
    assert model.num_queries == 7


def test_same_as_predict_on_hand_preprocessed_input(model, image_file):
    path, image = image_file
    result = inference_detector(model, path)

    # The tiny config's test pipeline: resize (60, 80) by 1.6 to fit (96, 128), keeping the ratio.
    resized = mmcv.imresize(image, (128, 96))
    sample = DetDataSample(metainfo=dict(ori_shape=(60, 80), img_shape=(96, 128),
                                         scale_factor=(1.6, 1.6)))
    data = model.data_preprocessor(
        dict(inputs=[torch.from_numpy(resized).permute(2, 0, 1)], data_samples=[sample]), False)
    with torch.no_grad():
        expected = model.predict(data['inputs'], data['data_samples'])[0].pred_instances

    got = result.pred_instances
    assert len(got) == 100
    torch.testing.assert_close(got.scores, expected.scores)
    torch.testing.assert_close(got.bboxes, expected.bboxes)
    assert torch.equal(got.labels, expected.labels)
    assert (got.bboxes[:, 2:] <= torch.tensor([80., 60.])).all()  # original image's pixels


def test_file_and_array_inputs_agree(model, image_file):
    path, image = image_file
    from_file = inference_detector(model, path)
    from_arrays = inference_detector(model, [image, image[:40]])
    assert isinstance(from_file, DetDataSample) and len(from_arrays) == 2
    for key in ('bboxes', 'scores', 'labels'):
        assert torch.equal(from_file.pred_instances[key], from_arrays[0].pred_instances[key])
    assert from_arrays[1].metainfo['ori_shape'] == (40, 80)
    # arrays leave the model's config as it was: files load after them
    assert torch.equal(inference_detector(model, path).pred_instances.scores,
                       from_file.pred_instances.scores)
    assert inference_detector(model, []) == []


def test_batch_equals_one_by_one(model, image_file, tmp_path):
    """Files and arrays of two sizes: the two 60x80 images go through the model together, the
    50x90 one alone, and each gets what inference_detector gives it alone."""
    path, image = image_file
    other = str(tmp_path / 'other.png')
    mmcv.imwrite(np.random.RandomState(1).randint(0, 256, (60, 80, 3), dtype=np.uint8), other)
    wide = np.random.RandomState(2).randint(0, 256, (50, 90, 3), dtype=np.uint8)
    images = [path, wide, other]
    batch_sizes = []
    test_step = model.test_step
    model.test_step = lambda data: batch_sizes.append(len(data['inputs'])) or test_step(data)
    try:
        batched = inference_detector_batch(model, images)
    finally:
        del model.test_step
    assert batch_sizes == [2, 1]
    assert len(batched) == 3
    for image, got in zip(images, batched):
        alone = inference_detector(model, image)
        assert got.metainfo['ori_shape'] == alone.metainfo['ori_shape']
        torch.testing.assert_close(got.pred_instances.scores, alone.pred_instances.scores)
        torch.testing.assert_close(got.pred_instances.bboxes, alone.pred_instances.bboxes)
        assert torch.equal(got.pred_instances.labels, alone.pred_instances.labels)
    assert inference_detector_batch(model, []) == []


def assert_same_detections(results):
    first, *others = results
    for other in others:
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(first.pred_instances[key], other.pred_instances[key]), key


def test_grayscale_arrays_are_replicated_to_3_channels(model):
    gray = np.random.RandomState(1).randint(0, 256, (60, 80), dtype=np.uint8)
    replicated = np.repeat(gray[:, :, None], 3, axis=2)
    assert_same_detections(inference_detector(model, [replicated, gray, gray[:, :, None]]))
    assert_same_detections([inference_detector(model, replicated),
                            inference_detector(model, Image.fromarray(gray, 'L'))])


def test_pil_images_are_converted_to_bgr(model, image_file):
    _, bgr = image_file
    rgb = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]), 'RGB')
    from_array = inference_detector(model, bgr)
    # the same pixels from RGB order, and with an alpha channel (dropped, as cv2 loads files)
    assert_same_detections([from_array, inference_detector(model, rgb),
                            inference_detector(model, rgb.convert('RGBA'))])
    # a channel order mix-up would change the detections (the image is not gray)
    assert not torch.equal(inference_detector(model, bgr[:, :, ::-1].copy()).pred_instances.scores,
                           from_array.pred_instances.scores)


@pytest.mark.parametrize('image, error, message', [
    (np.zeros((60, 80, 3), np.float32), TypeError,
     r'expected a uint8 array in BGR order of shape \(H, W, 3\), or a grayscale uint8 array of '
     r'shape \(H, W\) or \(H, W, 1\), got a float32 array \(a float image in 0..1 converts'),
    (np.zeros((60, 80), np.uint16), TypeError, 'got a uint16 array$'),
    (np.zeros((60, 80, 4), np.uint8), ValueError, r'got an array of shape \(60, 80, 4\)'),
    (np.zeros((2, 60, 80, 3), np.uint8), ValueError, r'got an array of shape \(2, 60, 80, 3\)'),
    (Image.new('I;16', (80, 60)), ValueError, "8 bits per channel .* got mode 'I;16'"),
    (Image.new('F', (80, 60)), ValueError, "got mode 'F'"),
], ids=['float', 'uint16', '4 channels', 'a batch', '16-bit PIL', 'float PIL'])
def test_other_images_are_refused(model, image, error, message):
    with pytest.raises(error, match=message):
        inference_detector(model, image)


def test_result_to_arrays_thresholds_and_sorts():
    result = DetDataSample()
    result.pred_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 1., 1.], [2., 2., 3., 3.], [4., 4., 5., 5.]]),
        scores=torch.tensor([0.2, 0.9, 0.5]),
        labels=torch.tensor([7, 8, 9]))
    assert result_to_arrays(result, score_thr=0.5)['labels'].tolist() == [8]  # above, as mmdet
    arrays = result_to_arrays(result, score_thr=0.4)
    np.testing.assert_array_equal(arrays['scores'], np.array([0.9, 0.5], np.float32))
    np.testing.assert_array_equal(arrays['labels'], [8, 9])
    np.testing.assert_array_equal(arrays['bboxes'], [[2., 2., 3., 3.], [4., 4., 5., 5.]])
    assert arrays['bboxes'].dtype == np.float32 and arrays['labels'].dtype == np.int64


def test_missing_files_are_named(model, tmp_path):
    with pytest.raises(FileNotFoundError, match='config file not found: .*nowhere.py'):
        init_detector(str(tmp_path / 'nowhere.py'))
    with pytest.raises(FileNotFoundError, match='checkpoint not found: .*nowhere.pth'):
        init_detector(TINY_CONFIG, str(tmp_path / 'nowhere.pth'))
    with pytest.raises(FileNotFoundError, match='image file not found: .*nowhere.png'):
        inference_detector(model, [str(tmp_path / 'nowhere.png')])


def test_bad_images_and_checkpoints_are_refused(model, image_file, checkpoint, tmp_path):
    path, image = image_file
    with pytest.raises(TypeError, match='all file names or all arrays and PIL images'):
        inference_detector(model, [path, image])
    with pytest.raises(TypeError, match='got int'):
        inference_detector(model, 3)
    state_dict = dict(checkpoint[1])
    del state_dict['level_embed']
    incomplete = str(tmp_path / 'incomplete.pth')
    save_checkpoint_file(dict(state_dict=state_dict), incomplete)
    with pytest.raises(ValueError, match=r'- 1 tensor\(s\) of the model are not in the '
                       r'checkpoint: level_embed\n'):
        init_detector(TINY_CONFIG, incomplete)
