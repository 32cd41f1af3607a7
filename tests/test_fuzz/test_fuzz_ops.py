"""Property-based tests of ms_deform_attn against the grid_sample reference: random small shapes
(empty batches and zero queries included) and sampling locations inside, on the borders of,
far outside and NaN/infinite. A NaN or infinite location reads zeros (no value, no gradient)."""
from dataclasses import dataclass

import pytest
import torch
from cuda_emulation import NO_CAP, emulated_ms_deform_attn
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdeform.ops import (deterministic_algorithms, level_start_index, ms_deform_attn,
                          ms_deform_attn_reference)

# How an edit sets one location coordinate (see :func:`edited_value`).
EDITS = ('grid', 'far', 'nan', 'inf', '-inf')


@dataclass
class Problem:
    inputs: list  # value, spatial_shapes, level_start_index, sampling_locations, weights
    on_grid: torch.Tensor  # (N, Lq, M, L, K): samples a 'grid' edit put on a pixel centre/edge


def edited_value(kind, step, size):
    """'grid': step / (2 * size), a pixel centre or edge (step -1 and 2 * size + 1 are the last
    locations that still touch the map); 'far': +-1e30; or a non-finite number."""
    if kind == 'grid':
        return step / (2 * size)
    if kind == 'far':
        return 1e30 if step % 2 else -1e30
    return float(kind)


@st.composite
def problems(draw, dtype=torch.float64):
    batch, heads, head_dims = draw(st.integers(0, 3)), draw(st.integers(1, 3)), draw(
        st.integers(1, 4))
    shapes = draw(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1,
                           max_size=3))
    queries, points = draw(st.integers(0, 4)), draw(st.integers(1, 3))
    spread = draw(st.sampled_from([1.0, 1.5, 6.0]))  # > 1: locations outside the map
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    levels, length = len(shapes), int(spatial_shapes.prod(-1).sum())
    value = torch.randn(batch, length, heads, head_dims, generator=generator, dtype=dtype)
    sample_shape = (batch, queries, heads, levels, points)
    locations = 0.5 + spread * (torch.rand(*sample_shape, 2, generator=generator, dtype=dtype)
                                - 0.5)
    weights = torch.rand(*sample_shape, generator=generator, dtype=dtype)

    on_grid = torch.zeros(sample_shape, dtype=torch.bool)
    edits = st.tuples(st.integers(0, 10**6), st.integers(0, 1), st.sampled_from(EDITS),
                      st.integers(-2, 12))
    for index, axis, kind, step in draw(st.lists(edits, max_size=8)) if on_grid.numel() else []:
        sample = index % on_grid.numel()
        level = sample // points % levels
        size = shapes[level][1 - axis]  # x is across the width, y across the height
        locations.view(-1, 2)[sample, axis] = edited_value(kind, step, size)
        on_grid.view(-1)[sample] |= kind == 'grid'
    inputs = [value, spatial_shapes, level_start_index(spatial_shapes), locations, weights]
    return Problem(inputs, on_grid)


# The CPU kernel, and the CUDA kernels emulated on the CPU under a random launch: a grid capped
# at a few blocks (grid-stride loops wrap), shuffled blocks and threads, 64-bit indices.
launches = st.fixed_dictionaries(dict(max_blocks=st.sampled_from([1, 2, 3, NO_CAP]),
                                      seed=st.one_of(st.none(), st.integers(0, 1000)),
                                      force_int64=st.booleans()))
ops = pytest.mark.parametrize('emulated', [False, True], ids=['cpu', 'emulated'])


def the_op(emulated, launch):
    if not emulated:
        return ms_deform_attn
    return lambda *inputs: emulated_ms_deform_attn(*inputs, **launch)


def far_outside_where_non_finite(inputs):
    """The inputs with every NaN/infinite location moved far outside the maps, where it reads
    zeros: what the op must compute from them (as the reference computes it, without relying on
    its handling of non-finite locations)."""
    value, shapes, starts, locations, weights = inputs
    return [value, shapes, starts, locations.nan_to_num(-10.0, -10.0, -10.0), weights]


@ops
@settings(max_examples=150)
@given(problem=problems(), launch=launches)
def test_forward_matches_reference(emulated, problem, launch):
    inputs = problem.inputs
    out = the_op(emulated, launch)(*inputs)
    value, locations = inputs[0], inputs[3]
    assert out.shape == (value.shape[0], locations.shape[1], value.shape[2] * value.shape[3])
    expected = ms_deform_attn_reference(*far_outside_where_non_finite(inputs))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(ms_deform_attn_reference(*inputs), expected, atol=1e-10, rtol=0)


@settings(max_examples=100)
@given(problem=problems(dtype=torch.float32))
def test_float32_forward_close_to_float64_reference(problem):
    out = ms_deform_attn(*problem.inputs)
    wide = [t.double() if t.is_floating_point() else t for t in problem.inputs]
    expected = ms_deform_attn_reference(*far_outside_where_non_finite(wide))
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def gradients(fn, inputs, grad_output):
    differentiable = (0, 3, 4)  # value, sampling_locations, attention_weights
    leaves = [t.clone().requires_grad_(i in differentiable) for i, t in enumerate(inputs)]
    fn(*leaves).backward(grad_output)
    return [leaves[i].grad for i in differentiable]


@ops
@settings(max_examples=100)
@given(problem=problems(), seed=st.integers(0, 2**31 - 1), launch=launches,
       deterministic=st.booleans())
def test_backward_matches_reference(emulated, problem, seed, launch, deterministic):
    inputs = problem.inputs
    value, locations = inputs[0], inputs[3]
    grad_output = torch.randn(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3],
                              generator=torch.Generator().manual_seed(seed), dtype=value.dtype)
    with deterministic_algorithms(deterministic):
        grad_value, grad_locations, grad_weights = gradients(the_op(emulated, launch), inputs,
                                                             grad_output)
    expected = gradients(ms_deform_attn_reference, far_outside_where_non_finite(inputs),
                         grad_output)
    torch.testing.assert_close(grad_value, expected[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(grad_weights, expected[2], atol=1e-10, rtol=0)
    # Bilinear sampling has kinks at pixel centres and at the map's border, where either
    # one-sided derivative is right: compare the locations' gradients off the grid edits.
    off_grid = ~problem.on_grid[..., None].expand_as(locations)
    torch.testing.assert_close(grad_locations[off_grid], expected[1][off_grid], atol=1e-10,
                               rtol=0)
    assert grad_locations.isfinite().all()


BREAKAGES = ('value length', 'start index', 'empty level', 'negative size')


@ops
@settings(max_examples=60)
@given(problem=problems(), breakage=st.sampled_from(BREAKAGES), amount=st.integers(1, 3),
       launch=launches)
def test_inconsistent_level_layout_raises_naming_the_argument(emulated, problem, breakage,
                                                              amount, launch):
    value, shapes, starts, locations, weights = problem.inputs
    if breakage == 'value length':
        value = torch.cat([value, value.new_zeros(value.shape[0], amount, *value.shape[2:])], 1)
    elif breakage == 'start index':
        starts = starts + amount
    else:
        shapes = shapes.clone()
        shapes[-1, amount % 2] = 0 if breakage == 'empty level' else -amount
    with pytest.raises(RuntimeError, match=r'ms_deform_attn: .*(spatial_shapes|level_start_index)'):
        the_op(emulated, launch)(value, shapes, starts, locations, weights)
