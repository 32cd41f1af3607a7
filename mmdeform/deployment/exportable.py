"""The detector's inference path as a module of tensors only, which torch.export, torch.compile
and the ONNX exporter can trace: a preprocessed (1, 3, H, W) image in, the head's top-k boxes,
scores and labels out."""
import mmcv
import torch
from mmdet.structures import DetDataSample
from torch import nn


class ExportableDetector(nn.Module):
    """A :class:`DeformableDETR` in eval mode for one fixed input size, batch 1.

    Exporters trace tensors, not mmdet's data samples, so the image's meta data is fixed here:
    an (H, W) image without padding and without rescaling. An export is valid for that size.

    Args:
        detector (DeformableDETR): the detector; it is put in eval mode.
        image_shape (tuple[int, int]): (H, W) of the input.

    ``forward(inputs)`` takes the (1, 3, H, W) normalized image (what the data preprocessor
    gives) and returns boxes (K, 4) as (x1, y1, x2, y2) in the input's pixels, scores (K,) and
    labels (K,) int64, K = min(max_per_img, num_queries * num_classes), best first: exactly what
    the head's ``predict`` returns.
    """

    def __init__(self, detector, image_shape):
        super().__init__()
        self.detector = detector.eval()
        self.image_shape = tuple(image_shape)
        self.data_sample = DetDataSample(
            metainfo=dict(img_shape=self.image_shape, scale_factor=(1.0, 1.0)))

    def forward(self, inputs):
        expected = (1, 3, *self.image_shape)
        if tuple(inputs.shape) != expected:
            raise ValueError(f'ExportableDetector takes inputs of shape {expected}, got '
                             f'{tuple(inputs.shape)}')
        feats = self.detector.extract_feat(inputs)
        # No data samples: no padding masks, the whole input is the image.
        hidden_states, references, _, _ = self.detector.forward_transformer(feats, None)
        result = self.detector.bbox_head.predict(hidden_states, references, [self.data_sample],
                                                 rescale=False)[0]
        return result.bboxes, result.scores, result.labels


def load_image(path, image_shape, data_preprocessor):
    """An image file as the (1, 3, H, W) input of :class:`ExportableDetector`: resized to exactly
    ``image_shape`` (H, W), aspect ratio not kept, then normalized by the detector's
    ``data_preprocessor``."""
    image = mmcv.imread(path)  # BGR, as mmdet's pipeline loads it
    if image is None:
        raise ValueError(f'cannot read an image from {path}')
    height, width = image_shape
    image = torch.from_numpy(mmcv.imresize(image, (width, height))).permute(2, 0, 1)
    return data_preprocessor(dict(inputs=[image.contiguous()]), False)['inputs']
