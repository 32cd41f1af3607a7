"""FLOPs and parameters of a detector, counted as mmdet's get_flops counts them: mmengine's
fvcore-style tracer, where one fused multiply-add is one FLOP and element-wise ops (add,
softmax, activations) count nothing. The tracer knows no handle for our multi-scale deformable
attention op and would skip it: :func:`ms_deform_attn_flop_jit` gives it one."""
import math

import torch
from mmdet.structures import DetDataSample
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from torch import nn

MS_DEFORM_ATTN_OP = 'mmdeform::ms_deform_attn_forward'


def ms_deform_attn_flop_jit(inputs, outputs):
    """FLOPs of one ``ms_deform_attn_forward`` call.

    Per query, head, level and point, each of the D head channels is interpolated from 4
    corners (4 multiply-adds) and then added to the output with its attention weight (1 more):
    5 * N * Lq * M * L * K * D.
    """
    head_dim = get_shape(inputs[0])[-1]  # value: (N, S, M, D)
    samples = math.prod(get_shape(inputs[3])[:-1])  # locations: (N, Lq, M, L, K, 2)
    return 5 * samples * head_dim


def flop_analyzer(model, inputs):
    """mmengine's FlopAnalyzer of ``model(*inputs)`` with the MSDA op counted and quiet about
    the element-wise ops it deliberately does not count."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**{MS_DEFORM_ATTN_OP: ms_deform_attn_flop_jit})
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


class _TensorForward(nn.Module):
    """The detector's inference path (``_forward``: features -> transformer -> head outputs)
    with the data samples bound, so the tracer sees a module taking one image tensor."""

    def __init__(self, detector, data_samples):
        super().__init__()
        self.detector = detector
        self.data_samples = data_samples

    def forward(self, inputs):
        return self.detector._forward(inputs, self.data_samples)


def detector_complexity(detector, shape):
    """FLOPs and parameters of a detector's inference on one (H, W) image.

    A blank uint8 image goes through the detector's data preprocessor, as the data pipeline's
    output would, so the traced input is what the model sees at test time. Leaves the detector
    in eval mode.

    Returns:
        dict: ``flops`` (int, multiply-adds), ``flops_by_operator`` (dict, e.g. ``conv``,
        ``linear``, ``ms_deform_attn_forward``) and ``params`` (int, every parameter's elements).
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'shape must be a positive (H, W), got {tuple(shape)}')
    height, width = shape
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
    batch = dict(inputs=[torch.zeros((3, height, width), dtype=torch.uint8)],
                 data_samples=[sample])
    detector.eval()
    with torch.no_grad():
        data = detector.data_preprocessor(batch, False)
        analyzer = flop_analyzer(_TensorForward(detector, data['data_samples']),
                                 (data['inputs'], ))
        flops = analyzer.total()  # traces the model once; by_operator reuses the trace
    return dict(flops=flops, flops_by_operator=dict(analyzer.by_operator()),
                params=parameter_count(detector)[''])
