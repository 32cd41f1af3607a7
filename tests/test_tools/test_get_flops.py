"""FLOP counting: the deformable attention op's formula, and tools/analysis_tools/get_flops.py on
a shrunk single-scale detector (ResNet-18, one encoder and one decoder layer, 64x96 input)."""
import os.path as osp
import re
import runpy
import sys

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmdeform.ops import level_start_index, ms_deform_attn
from mmdeform.utils.flops import detector_complexity, flop_analyzer

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'get_flops.py')
CONFIG = osp.join(ROOT, 'configs', 'deformable_detr_r50_single_scale.py')
TINY = {'model.backbone.depth': 18, 'model.neck.in_channels': [512],
        'model.encoder.num_layers': 1, 'model.decoder.num_layers': 1}


class OpOnly(nn.Module):
    def forward(self, value, shapes, locations, weights):
        return ms_deform_attn(value, shapes, level_start_index(shapes), locations, weights)


def test_op_flops_by_hand():
    N, Lq, M, D, K = 2, 7, 2, 3, 3
    shapes = torch.tensor([[4, 5], [2, 3]])
    L, S = len(shapes), 4 * 5 + 2 * 3
    inputs = (torch.rand(N, S, M, D), shapes, torch.rand(N, Lq, M, L, K, 2),
              torch.rand(N, Lq, M, L, K))
    analyzer = flop_analyzer(OpOnly(), inputs)
    # 2 * 7 * 2 * 2 * 3 = 168 samples, each 3 channels x (4 corner multiply-adds + 1 weighted add)
    assert analyzer.total() == 168 * 3 * 5 == 2520
    assert analyzer.by_operator() == {'ms_deform_attn_forward': 2520}


def tiny_detector():
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(TINY)
    return runpy.run_path(TOOL)['build_detector'](cfg)


def test_detector_complexity_counts_every_msda_call():
    detector = tiny_detector()
    complexity = detector_complexity(detector, (64, 96))
    assert complexity['params'] == sum(p.numel() for p in detector.parameters())
    # One encoder layer over the 2 x 3 pixels of C5 and one decoder layer over 300 queries,
    # M = 8 heads, L = 1 level, K = 4 points, D = 32 channels, 5 FLOPs per sample and channel.
    by_operator = complexity['flops_by_operator']
    assert by_operator['ms_deform_attn_forward'] == 5 * (2 * 3 + 300) * 8 * 1 * 4 * 32
    assert complexity['flops'] == sum(by_operator.values())
    assert by_operator['conv'] > 0 and by_operator['linear'] > 0


def test_tool_prints_params_and_flops(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['get_flops.py', CONFIG, '--shape', '64', '96',
                                      '--cfg-options', *(f'{k}={v}' for k, v in TINY.items())])
    runpy.run_path(TOOL, run_name='__main__')
    out = capsys.readouterr().out
    params = re.search(r'^Params: (\d+\.\d\d)M$', out, re.M)
    flops = re.search(r'^FLOPs: (\d+\.\d\d)G$', out, re.M)
    assert params and flops, out
    # The shape and the --cfg-options reached the model: the tiny detector's own counts.
    detector = tiny_detector()
    numel = sum(p.numel() for p in detector.parameters())
    assert params.group(1) == f'{numel / 1e6:.2f}'
    assert flops.group(1) == f'{detector_complexity(detector, (64, 96))["flops"] / 1e9:.2f}'
    # The same figures as a docs/results.md row, after the command that measured them.
    assert '`python tools/analysis_tools/get_flops.py ' in out
    assert f'| `{CONFIG}` | 64x96 | {params.group(1)}M | {flops.group(1)}G |' in out


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match='shape'):
        detector_complexity(nn.Identity(), (0, 96))
