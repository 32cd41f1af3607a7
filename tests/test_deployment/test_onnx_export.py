"""ONNX export (mmdeform.deployment.onnx, tools/deployment/pytorch2onnx.py): onnxruntime on CPU
predicts what the detector predicts with its native op."""
import os.path as osp

import mmcv
import numpy as np
import onnx
import pytest
import torch
from export_checks import IMAGE_SHAPE, predict
from mmengine.config import Config
from detector_checks import shrink_model
from tools_loader import load_tool

from mmdeform.deployment import export_onnx, onnx_predict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def assert_same_detections(onnx_outputs, torch_outputs):
    boxes, scores, labels = onnx_outputs
    expected_boxes, expected_scores, expected_labels = (t.numpy() for t in torch_outputs)
    assert boxes.shape == expected_boxes.shape == (5, 4)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(boxes, expected_boxes, rtol=0, atol=1e-3)  # pixels
    np.testing.assert_array_equal(labels, expected_labels)


def test_tool_exports_a_model_that_predicts_as_the_detector(two_stage_detector, tmp_path,
                                                           capsys):
    config = str(tmp_path / 'tiny.py')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py'))
    shrink_model(cfg, layers=1).dump(config)
    checkpoint = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=two_stage_detector.state_dict()), checkpoint)
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.random.randint(0, 256, (50, 70, 3), dtype=np.uint8), image)
    out = str(tmp_path / 'model.onnx')

    differences = load_tool('deployment/pytorch2onnx.py').main([config, checkpoint, '--out', out, '--shape',
                                    *map(str, IMAGE_SHAPE), '--verify', image])
    assert differences['boxes'] < 1e-3 and differences['scores'] < 1e-5
    assert differences['labels_differing'] == 0
    assert 'largest absolute difference' in capsys.readouterr().out

    op_types = {node.op_type for node in onnx.load(out).graph.node}
    assert 'GridSample' in op_types  # the op went through its reference
    inputs = torch.randn(1, 3, *IMAGE_SHAPE)  # the export traced zeros
    assert_same_detections(onnx_predict(out, inputs), predict(two_stage_detector, inputs))


def test_bad_paths_and_opset_are_clear_errors(two_stage_detector, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match='directory .*missing does not exist'):
        export_onnx(two_stage_detector, IMAGE_SHAPE, str(tmp_path / 'missing' / 'model.onnx'))
    with pytest.raises(FileNotFoundError, match='ONNX model not found'):
        onnx_predict(str(tmp_path / 'model.onnx'), torch.zeros(1, 3, *IMAGE_SHAPE))
    with pytest.raises(ValueError, match='opset_version must be >= 16'):
        export_onnx(two_stage_detector, IMAGE_SHAPE, str(tmp_path / 'model.onnx'), 15)

    config = osp.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py')
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(SystemExit):
        load_tool('deployment/pytorch2onnx.py').parse_args([config, missing, '--out', str(tmp_path / 'model.onnx')])
    assert f'checkpoint file {missing} does not exist' in capsys.readouterr().err
