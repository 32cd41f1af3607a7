"""mmcv 2.1's test of LoadImageFromFile (tests/test_transforms/test_transforms_loading.py), run
against ours built from our registry (as a config under scope ``mmdeform`` builds it), with
mmcv's assertions unchanged. mmcv's test images are written here: a 300 x 400 colour JPEG and its
grayscale version."""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest

from mmdeform.datasets.transforms import LoadImageFromFile as OurLoadImageFromFile
from mmdeform.registry import TRANSFORMS


def LoadImageFromFile(**kwargs):  # noqa: N802 (the class in mmcv's test body)
    transform = TRANSFORMS.build(dict(type='LoadImageFromFile', **kwargs))
    assert type(transform) is OurLoadImageFromFile
    return transform


@pytest.fixture
def data_prefix(tmp_path):
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (300, 400, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'color.jpg'), color)
    cv2.imwrite(str(tmp_path / 'grayscale.jpg'), cv2.cvtColor(color, cv2.COLOR_BGR2GRAY))
    return str(tmp_path)


class TestLoadImageFromFile:

    def test_load_img(self, data_prefix):
        # file_client_args and backend_args can not be both set
        with pytest.raises(
                ValueError,
                match='"file_client_args" and "backend_args" cannot be set'):
            LoadImageFromFile(
                file_client_args={'backend': 'disk'},
                backend_args={'backend': 'disk'})

        results = dict(img_path=osp.join(data_prefix, 'color.jpg'))
        transform = LoadImageFromFile()
        results = transform(copy.deepcopy(results))
        assert results['img_path'] == osp.join(data_prefix, 'color.jpg')
        assert results['img'].shape == (300, 400, 3)
        assert results['img'].dtype == np.uint8
        assert results['img_shape'] == (300, 400)
        assert results['ori_shape'] == (300, 400)
        assert repr(transform) == transform.__class__.__name__ + \
            "(ignore_empty=False, to_float32=False, color_type='color', " + \
            "imdecode_backend='cv2', backend_args=None)"

        # to_float32
        transform = LoadImageFromFile(to_float32=True)
        results = transform(copy.deepcopy(results))
        assert results['img'].dtype == np.float32

        # gray image
        results = dict(img_path=osp.join(data_prefix, 'grayscale.jpg'))
        transform = LoadImageFromFile()
        results = transform(copy.deepcopy(results))
        assert results['img'].shape == (300, 400, 3)
        assert results['img'].dtype == np.uint8

        transform = LoadImageFromFile(color_type='unchanged')
        results = transform(copy.deepcopy(results))
        assert results['img'].shape == (300, 400)
        assert results['img'].dtype == np.uint8

        # test load empty
        fake_img_path = osp.join(data_prefix, 'fake.jpg')
        results['img_path'] = fake_img_path
        transform = LoadImageFromFile(ignore_empty=False)
        with pytest.raises(FileNotFoundError):
            transform(copy.deepcopy(results))
        transform = LoadImageFromFile(ignore_empty=True)
        assert transform(copy.deepcopy(results)) is None
