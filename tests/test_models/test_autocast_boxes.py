"""Boxes keep fp32 precision under bf16 autocast (``tools/train.py --amp`` on CPU): reference
points, box branches and the two-stage proposal embedding compute in fp32 (``Fp32Linear``)."""
import os

import pytest
import torch
import torch.nn.functional as F
from detector_checks import build_detector, fake_batch
from mmengine.config import Config
from torch import nn

from mmdeform.models.layers import Fp32Linear, refine_boxes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TINY = os.path.join(ROOT, 'tests', 'test_apis', 'tiny_deformable_detr.py')
IMAGE_SIDE = 1333  # errors in pixels of the longer side of a COCO test image


def bf16_autocast():
    return torch.autocast('cpu', dtype=torch.bfloat16)


def test_fp32_linear_computes_in_fp32_under_autocast_only():
    linear, plain = Fp32Linear(16, 4), nn.Linear(16, 4)
    plain.load_state_dict(linear.state_dict())  # the same parameters and names
    x = torch.randn(3, 16)
    fp32, from_bf16 = plain(x), plain(x.bfloat16().float())
    with bf16_autocast():
        assert plain(x).dtype == torch.bfloat16  # autocast is on
        assert torch.equal(linear(x), fp32)
        assert torch.equal(linear(x.bfloat16()), from_bf16)
    assert torch.equal(linear(x), fp32)


def tiny_detector(two_stage):
    """The tiny detector with box refinement, 2 decoder layers and 100 queries, its box
    branches' last layers set so that deltas are of the size a trained first layer predicts (up
    to a few units), where bf16 keeps only 1/64 or 1/32 of a unit."""
    cfg = Config.fromfile(TINY)
    cfg.merge_from_dict(dict(model=dict(with_box_refine=True, as_two_stage=two_stage,
                                        num_queries=100, decoder=dict(num_layers=2))))
    model = build_detector(cfg).eval()
    for branch in model.bbox_head.reg_branches:
        nn.init.normal_(branch[-1].weight, std=0.3)
        nn.init.uniform_(branch[-1].bias, -2, 2)
    return model


def pixels(boxes, reference):
    return (boxes.float() - reference).abs() * IMAGE_SIDE


@pytest.mark.parametrize('two_stage', [False, True], ids=['refine', 'two_stage'])
def test_head_boxes_under_autocast_equal_fp32(two_stage):
    """From the same decoder outputs, the boxes under autocast are the fp32 ones; rounding the
    deltas to bf16 alone would move them by pixels."""
    model = tiny_detector(two_stage)
    batch = model.data_preprocessor(fake_batch(), False)
    with torch.no_grad():
        hidden_states, references, _, _ = model.forward_transformer(
            model.extract_feat(batch['inputs']), batch['data_samples'])
        _, boxes = model.bbox_head(hidden_states, references)
        with bf16_autocast():
            _, autocast_boxes = model.bbox_head(hidden_states, references)
            bf16_boxes = torch.stack([
                refine_boxes(reference, bf16_branch(branch, hidden_state)) for branch, reference,
                hidden_state in zip(model.bbox_head.reg_branches, references, hidden_states)])
    assert autocast_boxes.dtype == torch.float32
    assert pixels(autocast_boxes, boxes).max() < 1e-3
    assert pixels(bf16_boxes, boxes).max() > 1  # what the fp32 branches avoid


def bf16_branch(branch, x):
    """A box branch as plain Linear layers compute it under autocast: in bf16."""
    for layer in branch:
        x = F.linear(x, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else layer(x)
    return x


def test_one_stage_boxes_under_autocast_within_a_fraction_of_a_pixel():
    """The whole one-stage detector under autocast: the initial reference points are the fp32
    ones exactly, and the boxes of every layer within a fraction of a pixel (what remains comes
    from the bf16 features of the backbone, encoder and decoder)."""
    model = tiny_detector(two_stage=False)
    batch = model.data_preprocessor(fake_batch(), False)
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'])
        hidden_states, references, _, _ = model.forward_transformer(feats, batch['data_samples'])
        _, boxes = model.bbox_head(hidden_states, references)
        with bf16_autocast():
            feats = model.extract_feat(batch['inputs'])
            hidden_states, autocast_references, _, _ = model.forward_transformer(
                feats, batch['data_samples'])
            _, autocast_boxes = model.bbox_head(hidden_states, autocast_references)
    assert torch.equal(autocast_references[0], references[0])  # reference_points_fc in fp32
    # 2 images x 100 queries x 2 layers x 4 coordinates; with bf16 reference points and box
    # branches the median is 1.2 px, the 90th percentile 3.2 px (docs/results.md)
    errors = pixels(autocast_boxes, boxes).flatten()
    assert errors.median() < 0.25 and errors.quantile(0.9) < 0.75


def test_two_stage_under_autocast_keeps_fp32_boxes_and_queries():
    """Two-stage: from the same encoder memory, the first stage's boxes under autocast are the
    fp32 ones; the decoder's reference boxes, queries and hidden states are fp32 (the proposal
    embedding in fp32 starts the residual stream in fp32, as one-stage's learned queries)."""
    model = tiny_detector(two_stage=True)
    batch = model.data_preprocessor(fake_batch(), False)
    feats = model.extract_feat(batch['inputs'])
    masks = [torch.zeros(f.shape[0], *f.shape[-2:], dtype=torch.bool) for f in feats]
    with torch.no_grad():
        feat, pos, mask, spatial_shapes, valid_ratios = model.flatten_levels(feats, masks)
        memory = torch.randn_like(feat)
        valid_sizes = torch.tensor([f.shape[-1:-3:-1] for f in feats]).expand(len(feat), -1, -1)
        *_, boxes = model.proposal_queries(memory, mask, spatial_shapes, valid_sizes)
        with bf16_autocast():
            query, query_pos, reference, _, autocast_boxes = model.proposal_queries(
                memory, mask, spatial_shapes, valid_sizes)
            hidden_states, references, _, _ = model.forward_transformer(
                feats, batch['data_samples'])
    assert pixels(autocast_boxes, boxes).max() < 1e-3
    assert {reference.dtype, query.dtype, query_pos.dtype} == {torch.float32}
    assert {hidden_states.dtype, *(r.dtype for r in references)} == {torch.float32}
