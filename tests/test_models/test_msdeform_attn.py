"""BatchFirstMSDeformAttn against mmcv's module with the same weights."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention as MMCVAttention

from mmdeform.models.layers import BatchFirstMSDeformAttn
from mmdeform.ops import level_start_index
from mmdeform.registry import MODELS

SHAPES = torch.tensor([[12, 9], [6, 5], [3, 3], [2, 1]])


def pair(**kwargs):
    ours = BatchFirstMSDeformAttn(**kwargs).eval()
    theirs = MMCVAttention(batch_first=True, **kwargs).eval()
    theirs.load_state_dict(ours.state_dict())
    # Random projections too, so every path (offsets, weights) is exercised.
    with torch.no_grad():
        for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
            p_ours.normal_(0, 0.05)
            p_theirs.copy_(p_ours)
    return ours, theirs


def inputs(batch=2, queries=11, dims=64, levels=4, box=False, padded=True, query_pos=True):
    shapes = SHAPES[:levels]
    length = int(shapes.prod(-1).sum())
    query = torch.randn(batch, queries, dims)
    value = torch.randn(batch, length, dims)
    reference = torch.rand(batch, queries, levels, 4 if box else 2)
    if box:
        reference[..., 2:] *= 0.5
    mask = torch.rand(batch, length) < 0.2 if padded else None
    pos = torch.randn(batch, queries, dims) if query_pos else None
    return dict(query=query, value=value, reference_points=reference, spatial_shapes=shapes,
                level_start_index=level_start_index(shapes), key_padding_mask=mask,
                query_pos=pos)


@pytest.mark.parametrize('box', [False, True], ids=['2-d points', '4-d boxes'])
@pytest.mark.parametrize('padded', [False, True], ids=['no mask', 'padding mask'])
def test_matches_mmcv(box, padded):
    ours, theirs = pair(embed_dims=64, num_heads=4, num_levels=4, num_points=3)
    kwargs = inputs(box=box, padded=padded)
    expected = theirs(**kwargs)
    out = ours(**kwargs)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_self_attention_and_one_level_match_mmcv():
    ours, theirs = pair(embed_dims=32, num_heads=2, num_levels=1, num_points=4)
    kwargs = inputs(dims=32, levels=1, queries=int(SHAPES[0].prod()), query_pos=False)
    del kwargs['value']  # value defaults to the query, as in the encoder
    torch.testing.assert_close(ours(**kwargs), theirs(**kwargs), atol=1e-5, rtol=1e-5)


def test_gradients_match_mmcv():
    ours, theirs = pair(embed_dims=32, num_heads=4, num_levels=2, num_points=2)
    kwargs = inputs(dims=32, levels=2)
    ours(**kwargs).square().sum().backward()
    theirs(**kwargs).square().sum().backward()
    for (name, p_ours), p_theirs in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p_ours.grad, p_theirs.grad, atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f'{name}: {m}')


def test_init_matches_paper_and_mmcv():
    ours = BatchFirstMSDeformAttn()
    theirs = MMCVAttention(batch_first=True)
    theirs.init_weights()
    assert torch.equal(ours.sampling_offsets.weight, torch.zeros_like(ours.sampling_offsets.weight))
    torch.testing.assert_close(ours.sampling_offsets.bias, theirs.sampling_offsets.bias)
    # Head 0 looks along +x, head 2 along +y (t = 2*pi*m/8); point k sits k+1 pixels away.
    grid = ours.sampling_offsets.bias.view(8, 4, 4, 2)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.tensor([1., 2., 3., 4.]))
    torch.testing.assert_close(grid[2, 3, 1], torch.tensor([0., 2.]), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[1, 0, 0], torch.tensor([1., 1.]))
    for layer in (ours.attention_weights, ours.value_proj.bias, ours.output_proj.bias):
        params = layer.parameters() if isinstance(layer, torch.nn.Module) else [layer]
        assert all(torch.equal(p, torch.zeros_like(p)) for p in params)


def test_built_from_registry_and_rejects_bad_config():
    attention = MODELS.build(dict(type='BatchFirstMSDeformAttn', embed_dims=32,
                                  num_heads=4, num_levels=2))
    assert isinstance(attention, BatchFirstMSDeformAttn)
    with pytest.raises(ValueError, match='divisible'):
        BatchFirstMSDeformAttn(embed_dims=30, num_heads=4)


def test_mmcv_name_builds_mmcv_attention():
    """Ours has its own name: mmcv's name builds mmcv's module (sequence-first by default)."""
    attention = MODELS.build(dict(type='MultiScaleDeformableAttention', embed_dims=32,
                                  num_heads=4, num_levels=2))
    assert type(attention) is MMCVAttention and not attention.batch_first


def test_bad_reference_and_levels_are_named():
    attention = BatchFirstMSDeformAttn(embed_dims=32, num_heads=2, num_levels=4).eval()
    kwargs = inputs(dims=32)
    kwargs['reference_points'] = kwargs['reference_points'][..., :1]
    with pytest.raises(ValueError, match='reference_points'):
        attention(**kwargs)
    kwargs = inputs(dims=32, levels=2)
    with pytest.raises(ValueError, match='num_levels'):
        attention(**kwargs)


def test_mixed_precision_runs_op_in_float32():
    attention = BatchFirstMSDeformAttn(embed_dims=32, num_heads=2, num_levels=4).eval()
    kwargs = inputs(dims=32)
    expected = attention(**kwargs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = attention(**kwargs)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)
