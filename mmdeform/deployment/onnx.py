"""ONNX export of :class:`ExportableDetector` and its check with onnxruntime.

The op: ONNX has no multi-scale deformable attention, so the export routes
:func:`mmdeform.ops.ms_deform_attn` through its pure-PyTorch reference
(:func:`mmdeform.ops.reference_forward`), whose ``grid_sample`` is ONNX's GridSample (opset >= 16).
The alternative, a custom ONNX op, would need a second implementation of the op for ONNX and a
custom-op library for every runtime; this way the model runs on any ONNX runtime.

The exporter: the reference cuts the flattened values into levels by the (H, W) it reads from
``spatial_shapes``. torch.onnx's TorchScript exporter (``dynamo=False``) traces those values as
constants, which fixes the input size, as the exported graph is anyway. Its dynamo exporter goes
through torch.export, where they are data: the per-level reshape then has data-dependent shapes
it cannot export.
"""
import os
import warnings

import numpy as np
import torch

from mmdeform.ops import reference_forward
from .exportable import ExportableDetector

MIN_OPSET = 16  # GridSample
INPUT_NAME = 'inputs'
OUTPUT_NAMES = ('boxes', 'scores', 'labels')


def export_onnx(detector, image_shape, path, opset_version=17):
    """Writes :class:`ExportableDetector` ``(detector, image_shape)`` to ``path`` as ONNX.

    Input ``inputs`` (1, 3, H, W) float32; outputs ``boxes``, ``scores``, ``labels``.
    """
    if opset_version < MIN_OPSET:
        raise ValueError(f'opset_version must be >= {MIN_OPSET} (ONNX GridSample), '
                         f'got {opset_version}')
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'cannot write {path}: directory {folder} does not exist')
    module = ExportableDetector(detector, image_shape)
    inputs = torch.zeros(1, 3, *image_shape)
    with torch.no_grad(), reference_forward(), warnings.catch_warnings():
        # The tracer warns at every tensor it reads as a Python number (the level shapes and
        # the image size): constants of the fixed-size graph, as intended.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(module, (inputs, ), path, dynamo=False, opset_version=opset_version,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES))
    return path


def onnx_predict(path, inputs):
    """Runs an exported model with onnxruntime on CPU: (boxes, scores, labels) numpy arrays."""
    import onnxruntime  # a development requirement only: importing mmdeform needs no ONNX

    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX model not found: {path}')
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    return tuple(session.run(list(OUTPUT_NAMES), {INPUT_NAME: inputs.numpy()}))


def max_abs_differences(onnx_outputs, torch_outputs):
    """The largest absolute difference of boxes and of scores, and how many labels differ."""
    (boxes, scores, labels), (ref_boxes, ref_scores, ref_labels) = (
        onnx_outputs, [t.detach().numpy() for t in torch_outputs])
    return dict(boxes=float(np.abs(boxes - ref_boxes).max()),
                scores=float(np.abs(scores - ref_scores).max()),
                labels_differing=int((labels != ref_labels).sum()))
