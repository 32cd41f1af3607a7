"""Positional encodings, encoder and decoder against mmdet 3.3's with the same weights."""
import copy

import pytest
import torch
from mmdet.models.detectors import DeformableDETR
from mmdet.models.layers import SinePositionalEncoding as MMDetSinePositionalEncoding
from mmdet.models.layers.transformer import (DeformableDetrTransformerDecoder,
                                             DeformableDetrTransformerEncoder)
from torch import nn

from mmdeform.models.layers import (DeformableDetrDecoder, DeformableDetrDecoderLayer,
                                    DeformableDetrEncoder, DeformableDetrEncoderLayer,
                                    SinePositionalEncoding, box_sine_embedding)
from mmdeform.ops import level_start_index
from mmdeform.registry import MODELS

SHAPES = torch.tensor([[8, 10], [4, 5], [2, 3], [1, 2]])
DIMS = 64


def encoder_cfg(levels):
    return dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=DIMS, num_heads=4, num_levels=levels, num_points=3,
                               batch_first=True),
            ffn_cfg=dict(embed_dims=DIMS, feedforward_channels=128, ffn_drop=0.1)))


def decoder_cfg(levels):
    return dict(
        num_layers=2,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=DIMS, num_heads=4, dropout=0.1, batch_first=True),
            cross_attn_cfg=dict(embed_dims=DIMS, num_heads=4, num_levels=levels, num_points=3,
                                batch_first=True),
            ffn_cfg=dict(embed_dims=DIMS, feedforward_channels=128, ffn_drop=0.1)),
        post_norm_cfg=None)


def pair(ours_type, theirs_type, cfg):
    """Ours built through the registry with perturbed weights, and mmdet's loading them."""
    ours = MODELS.build(dict(type=ours_type, **copy.deepcopy(cfg))).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    theirs = theirs_type(**copy.deepcopy(cfg)).eval()
    theirs.load_state_dict(ours.state_dict())  # strict: the same names and shapes
    return ours, theirs


def multi_scale(levels, batch=2):
    """Flattened levels of a padded batch: image 0 fills the batch, image 1 about 0.6 x 0.7."""
    shapes = SHAPES[:levels]
    masks, ratios = [], []
    for H, W in shapes.tolist():
        mask = torch.zeros(batch, H, W, dtype=torch.bool)
        mask[1, -(-H * 6 // 10):] = True  # valid: ceil(0.6 H) rows, ceil(0.7 W) columns
        mask[1, :, -(-W * 7 // 10):] = True
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        ratios.append(torch.stack([valid_w / W, valid_h / H], -1))
        masks.append(mask.flatten(1))
    length = int(shapes.prod(-1).sum())
    return dict(key_padding_mask=torch.cat(masks, 1), spatial_shapes=shapes,
                level_start_index=level_start_index(shapes),
                valid_ratios=torch.stack(ratios, 1)), length


@pytest.mark.parametrize('kwargs', [
    dict(num_feats=128, normalize=True, offset=-0.5),
    dict(num_feats=16, temperature=20, normalize=True, offset=-0.5), dict(num_feats=8)
], ids=['Deformable DETR', 'other feats and temperature', "mmdet's defaults"])
def test_positional_encoding_matches_mmdet(kwargs):
    theirs = MMDetSinePositionalEncoding(**kwargs)
    mask = torch.zeros(2, 7, 9, dtype=torch.bool)
    mask[1, 5:] = True
    mask[1, :, 6:] = True
    out = SinePositionalEncoding(**kwargs)(mask)
    assert out.shape == (2, 2 * theirs.num_feats, 7, 9)
    torch.testing.assert_close(out, theirs(mask))


@pytest.mark.parametrize('num_feats, temperature', [(128, 10000), (16, 20)])
def test_box_embedding_matches_mmdet_proposal_embedding(num_feats, temperature):
    logits = torch.randn(2, 5, 4) * 2
    # mmdet's takes unnormalized (logit) boxes and applies the sigmoid itself.
    expected = DeformableDETR.get_proposal_pos_embed(logits, num_feats, temperature)
    out = box_sine_embedding(logits.sigmoid(), num_feats, temperature)
    assert out.shape == (2, 5, 4 * num_feats)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize('levels', [2, 4])
def test_encoder_matches_mmdet(levels):
    ours, theirs = pair('DeformableDetrEncoder', DeformableDetrTransformerEncoder,
                        encoder_cfg(levels))
    kwargs, length = multi_scale(levels)
    assert (kwargs['valid_ratios'][1, :2] < 1).all()  # real padding
    torch.testing.assert_close(
        DeformableDetrEncoder.reference_points(kwargs['spatial_shapes'], kwargs['valid_ratios'],
                                               length),
        theirs.get_encoder_reference_points(kwargs['spatial_shapes'], kwargs['valid_ratios'],
                                            device='cpu'))
    query, query_pos = torch.randn(2, length, DIMS), torch.randn(2, length, DIMS)
    out = ours(query, query_pos, **kwargs)
    assert out.shape == (2, length, DIMS)
    torch.testing.assert_close(out, theirs(query, query_pos, **kwargs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('box, refine', [(False, False), (False, True), (True, True)],
                         ids=['2-d', '2-d refined', '4-d refined (two-stage)'])
def test_decoder_matches_mmdet(box, refine):
    levels, queries = 3, 7
    ours, theirs = pair('DeformableDetrDecoder', DeformableDetrTransformerDecoder,
                        decoder_cfg(levels))
    kwargs, length = multi_scale(levels)
    reference = torch.rand(2, queries, 4 if box else 2)
    if box:
        reference[..., 2:] *= 0.4
    reg_branches = nn.ModuleList(nn.Linear(DIMS, 4) for _ in range(2)) if refine else None
    inputs = dict(query=torch.randn(2, queries, DIMS), query_pos=torch.randn(2, queries, DIMS),
                  value=torch.randn(2, length, DIMS), reference_points=reference,
                  reg_branches=reg_branches, **kwargs)

    outputs, references = ours(**inputs)
    expected_outputs, expected_references = theirs(**inputs)
    assert outputs.shape == (2, 2, queries, DIMS)
    # Refinement turns a 2-d reference into a box from the first layer on.
    assert references.shape == (2, 2, queries, 4 if box or refine else 2)
    torch.testing.assert_close(outputs, expected_outputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(references, expected_references, atol=1e-5, rtol=1e-5)
    if refine:
        assert outputs.requires_grad and not references.requires_grad  # detached chain
    else:
        assert (references == reference).all()


MMDET_ENCODER = dict(  # configs/deformable_detr/deformable-detr_r50_16xb2-50e_coco.py
    num_layers=6,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, batch_first=True),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=1024, ffn_drop=0.1)))
MMDET_DECODER = dict(
    num_layers=6,
    return_intermediate=True,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
        cross_attn_cfg=dict(embed_dims=256, batch_first=True),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=1024, ffn_drop=0.1)),
    post_norm_cfg=None)


def test_mmdet_configs_build_ours_and_load_mmdet_weights():
    encoder = MODELS.build(dict(type='DeformableDetrEncoder', **copy.deepcopy(MMDET_ENCODER)))
    decoder = MODELS.build(dict(type='DeformableDetrDecoder', **copy.deepcopy(MMDET_DECODER)))
    position = MODELS.build(dict(type='SinePositionalEncoding', num_feats=128, normalize=True,
                                 offset=-0.5))
    assert type(encoder) is DeformableDetrEncoder and encoder.embed_dims == 256
    assert type(decoder) is DeformableDetrDecoder and decoder.embed_dims == 256
    assert type(position) is SinePositionalEncoding
    assert type(encoder.layers[0]) is DeformableDetrEncoderLayer
    assert type(decoder.layers[0]) is DeformableDetrDecoderLayer
    # mmcv's deprecated `dropout` means both the attention and the residual dropout.
    self_attn = decoder.layers[0].self_attn
    assert self_attn.batch_first and self_attn.attn.dropout == 0.1
    assert self_attn.dropout_layer.p == 0.1
    encoder.load_state_dict(
        DeformableDetrTransformerEncoder(**copy.deepcopy(MMDET_ENCODER)).state_dict())
    decoder.load_state_dict(
        DeformableDetrTransformerDecoder(**copy.deepcopy(MMDET_DECODER)).state_dict())
    assert 'layers.5.cross_attn.sampling_offsets.weight' in decoder.state_dict()


@pytest.mark.parametrize('where', ['encoder self_attn', 'decoder self_attn',
                                   'decoder cross_attn'])
def test_batch_first_false_is_rejected(where):
    part, attn = where.split()
    cfg = copy.deepcopy(MMDET_ENCODER if part == 'encoder' else MMDET_DECODER)
    cfg['num_layers'] = 1
    cfg['layer_cfg'][f'{attn}_cfg']['batch_first'] = False
    with pytest.raises(ValueError, match='batch-first only'):
        MODELS.build(dict(type=f'DeformableDetr{part.title()}', **cfg))


@pytest.mark.parametrize('change', [dict(return_intermediate=False),
                                    dict(post_norm_cfg=dict(type='LN'))])
def test_decoder_rejects_what_it_does_not_do(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        DeformableDetrDecoder(**{**copy.deepcopy(MMDET_DECODER), 'num_layers': 1, **change})
