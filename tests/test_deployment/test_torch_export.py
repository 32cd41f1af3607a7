"""torch.export of the inference path: the fused op stays in the graph, outputs equal eager."""
import pytest
import torch
from export_checks import IMAGE_SHAPE, predict

from mmdeform.deployment import ExportableDetector


def test_exported_program_equals_eager(two_stage_detector):
    module = ExportableDetector(two_stage_detector, IMAGE_SHAPE)
    program = torch.export.export(module, (torch.randn(1, 3, *IMAGE_SHAPE), ))
    targets = {str(node.target) for node in program.graph.nodes}
    assert 'mmdeform.ms_deform_attn_forward.default' in targets  # the native op, not grid_sample
    inputs = torch.randn(1, 3, *IMAGE_SHAPE)  # not the traced input: nothing data-dependent
    with torch.no_grad():
        exported = program.module()(inputs)
    for got, expected in zip(exported, predict(two_stage_detector, inputs)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_input_of_another_size_is_a_clear_error(two_stage_detector):
    module = ExportableDetector(two_stage_detector, IMAGE_SHAPE)
    with pytest.raises(ValueError, match=r'inputs of shape \(1, 3, 60, 90\), got \(1, 3, 64, 90\)'):
        module(torch.randn(1, 3, 64, 90))
