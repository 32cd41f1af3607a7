"""BatchFirstMSDeformAttn(own_level_only=True), the "w/o multi-scale attention" ablation:
each encoder query reads only the level it lies on."""
import pytest
import torch

from mmdeform.models.layers import BatchFirstMSDeformAttn
from mmdeform.ops import level_start_index

SHAPES = torch.tensor([[6, 5], [3, 3], [2, 1]])
DIMS, HEADS, POINTS = 32, 4, 3


def attention(num_levels=3, own_level_only=True):
    attn = BatchFirstMSDeformAttn(DIMS, HEADS, num_levels, POINTS, dropout=0.,
                                         own_level_only=own_level_only).eval()
    with torch.no_grad():  # random projections, so that every level gets its own weights
        for p in attn.parameters():
            p.normal_(0, 0.1)
    return attn


def encoder_inputs(shapes=SHAPES):
    length = int(shapes.prod(-1).sum())
    return dict(query=torch.randn(2, length, DIMS), query_pos=torch.randn(2, length, DIMS),
                reference_points=torch.rand(2, length, len(shapes), 2), spatial_shapes=shapes,
                level_start_index=level_start_index(shapes),
                key_padding_mask=torch.rand(2, length) < 0.2)


def level_slice(level):
    start = int(level_start_index(SHAPES)[level])
    return slice(start, start + int(SHAPES[level].prod()))


@pytest.mark.parametrize('own_level_only', [True, False])
def test_output_ignores_other_levels(own_level_only):
    attn, kwargs = attention(own_level_only=own_level_only), encoder_inputs()
    out = attn(**kwargs)
    perturbed = dict(kwargs, query=kwargs['query'].clone())
    perturbed['query'][:, level_slice(1)] += torch.randn_like(perturbed['query'][:, level_slice(1)])
    out_perturbed = attn(**perturbed)
    for level in (0, 2):
        rows = level_slice(level)
        unchanged = torch.equal(out[:, rows], out_perturbed[:, rows])
        assert unchanged == own_level_only


def one_level_state(state, level):
    """A 1-level attention's parameters: level l's rows of the offset and weight projections,
    whose outputs are laid out as (M, L, K[, 2])."""
    state = dict(state)
    for key in ('sampling_offsets.weight', 'sampling_offsets.bias', 'attention_weights.weight',
                'attention_weights.bias'):
        per_head = state[key].view(HEADS, len(SHAPES), -1, *state[key].shape[1:])
        state[key] = per_head[:, level].flatten(0, 1)
    return state


@pytest.mark.parametrize('level', [0, 1, 2])
def test_equals_single_level_attention_on_that_level(level):
    """Level l's queries get what a 1-level attention with level l's weights gives on map l."""
    multi, kwargs = attention(), encoder_inputs()
    single = attention(num_levels=1, own_level_only=False)
    single.load_state_dict(one_level_state(multi.state_dict(), level))

    rows, levels = level_slice(level), slice(level, level + 1)
    expected = single(kwargs['query'][:, rows], kwargs['reference_points'][:, rows, levels],
                      SHAPES[levels], level_start_index(SHAPES[levels]),
                      query_pos=kwargs['query_pos'][:, rows],
                      key_padding_mask=kwargs['key_padding_mask'][:, rows])
    torch.testing.assert_close(multi(**kwargs)[:, rows], expected, atol=1e-5, rtol=1e-5)


def test_needs_one_query_per_position():
    kwargs = encoder_inputs()
    kwargs['value'] = kwargs['query']
    kwargs['query'] = kwargs['query'][:, :7]
    kwargs['query_pos'] = kwargs['query_pos'][:, :7]
    kwargs['reference_points'] = kwargs['reference_points'][:, :7]
    with pytest.raises(ValueError, match='own_level_only needs one query per position'):
        attention()(**kwargs)
