"""What the export tests share: the input size and the detector's own predictions."""
import torch
from mmdet.structures import DetDataSample

# Small enough for fast exports; not a multiple of the strides, as real inputs are not.
IMAGE_SHAPE = (60, 90)


def predict(detector, inputs):
    """The detector's own predictions (``predict``, not the exported path) for a (1, 3, H, W)
    batch as (boxes, scores, labels)."""
    shape = tuple(inputs.shape[-2:])
    sample = DetDataSample(metainfo=dict(img_shape=shape, batch_input_shape=shape,
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        result = detector.predict(inputs, [sample], rescale=False)[0].pred_instances
    return result.bboxes, result.scores, result.labels
