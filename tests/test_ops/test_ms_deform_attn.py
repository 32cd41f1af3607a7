"""The native op against the grid_sample reference: values, gradients, tracing, bad input."""
import pytest
import torch

from mmdeform.ops import level_start_index, ms_deform_attn, ms_deform_attn_reference

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def make_inputs(batch, shapes, heads, head_dims, queries, points, dtype=torch.float32,
                device='cpu', spread=1.0):
    """Random op inputs; locations span [0.5 - spread/2, 0.5 + spread/2] (outside the map
    when spread > 1)."""
    spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=device)
    levels = len(shapes)
    length = int(spatial_shapes.prod(-1).sum())
    value = torch.randn(batch, length, heads, head_dims, dtype=dtype, device=device)
    locations = 0.5 + spread * (
        torch.rand(batch, queries, heads, levels, points, 2, dtype=dtype, device=device) - 0.5)
    weights = torch.rand(batch, queries, heads, levels, points, dtype=dtype,
                         device=device).softmax(-1)
    return value, spatial_shapes, level_start_index(spatial_shapes), locations, weights


# (batch, level shapes (H, W), heads, head dims, queries, points, spread)
CASES = {
    'one level': (2, [(7, 5)], 2, 4, 9, 3, 1.0),
    'four non-square levels': (2, [(12, 7), (6, 4), (3, 2), (1, 1)], 4, 8, 17, 4, 1.2),
    '1x1 levels': (3, [(1, 1), (1, 1), (2, 1)], 2, 3, 5, 2, 1.0),
    'far outside [0, 1]': (2, [(6, 9), (3, 5)], 2, 4, 11, 4, 6.0),
    'batch 1, one query': (1, [(5, 6), (3, 3)], 8, 32, 1, 4, 1.0),
    'batch 70': (70, [(4, 6), (2, 3)], 2, 8, 6, 2, 1.2),
    'paper sizes': (2, [(16, 24), (8, 12), (4, 6), (2, 3)], 8, 32, 50, 4, 1.1),
}
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())
def test_forward_matches_reference(case, dtype):
    *sizes, spread = case
    inputs = make_inputs(*sizes, dtype=dtype, spread=spread)
    out = ms_deform_attn(*inputs)
    expected = ms_deform_attn_reference(*inputs)
    assert out.shape == (sizes[0], sizes[4], sizes[2] * sizes[3])
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, atol=TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())
def test_backward_matches_reference(case):
    *sizes, spread = case
    inputs = make_inputs(*sizes, dtype=torch.float64, spread=spread)
    grad_output = torch.randn(sizes[0], sizes[4], sizes[2] * sizes[3], dtype=torch.float64)
    differentiable = (0, 3, 4)  # value, sampling_locations, attention_weights

    def gradients(fn):
        args = [t.clone().requires_grad_(i in differentiable) for i, t in enumerate(inputs)]
        fn(*args).backward(grad_output)
        return [args[i].grad for i in differentiable]

    for got, expected in zip(gradients(ms_deform_attn), gradients(ms_deform_attn_reference)):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_gradcheck():
    inputs = make_inputs(2, [(5, 4), (3, 2), (1, 1)], 2, 3, 4, 2, dtype=torch.float64,
                         spread=1.3)
    for i in (0, 3, 4):
        inputs[i].requires_grad_()
    assert torch.autograd.gradcheck(ms_deform_attn, inputs)


def test_non_finite_locations_read_zeros():
    value, shapes, starts, locations, weights = make_inputs(1, [(4, 4)], 1, 2, 4, 1)
    locations[0, :, 0, 0, 0] = torch.tensor(
        [[float('nan'), 0.5], [float('inf'), 0.5], [0.5, -float('inf')], [1e30, -1e30]])
    locations.requires_grad_()
    value.requires_grad_()
    out = ms_deform_attn(value, shapes, starts, locations, weights)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.equal(locations.grad, torch.zeros_like(locations))
    assert torch.equal(value.grad, torch.zeros_like(value))


def test_hand_computed_sample():
    # One 2x2 map, one point at the centre of the map: pixel coordinates (0.5, 0.5), so the
    # four pixels are averaged; the attention weight scales the result.
    value = torch.tensor([1., 2., 3., 4.]).view(1, 4, 1, 1)
    shapes = torch.tensor([[2, 2]])
    locations = torch.tensor([0.5, 0.5]).view(1, 1, 1, 1, 1, 2)
    weights = torch.tensor([0.5]).view(1, 1, 1, 1, 1)
    out = ms_deform_attn(value, shapes, level_start_index(shapes), locations, weights)
    assert out.item() == pytest.approx(0.5 * 2.5)
    # At the top-left pixel's centre (x, y) = (0.25, 0.25): exactly that pixel.
    locations = torch.tensor([0.25, 0.25]).view(1, 1, 1, 1, 1, 2)
    out = ms_deform_attn(value, shapes, level_start_index(shapes), locations, weights)
    assert out.item() == pytest.approx(0.5 * 1.0)


def test_backward_is_deterministic():
    inputs = make_inputs(2, [(20, 30), (10, 15)], 4, 8, 300, 4, spread=1.1)
    for i in (0, 3, 4):
        inputs[i].requires_grad_()
    grad_output = torch.randn(2, 300, 32)
    first = torch.autograd.grad(ms_deform_attn(*inputs), [inputs[i] for i in (0, 3, 4)],
                                grad_output)
    second = torch.autograd.grad(ms_deform_attn(*inputs), [inputs[i] for i in (0, 3, 4)],
                                 grad_output)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_bfloat16_close_to_float32():
    inputs = make_inputs(2, [(8, 6), (4, 3)], 2, 16, 10, 4)
    expected = ms_deform_attn_reference(*inputs)
    low = [t.bfloat16() if t.is_floating_point() else t for t in inputs]
    out = ms_deform_attn(*low)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=2e-2)


def test_empty_inputs():
    value, shapes, starts, locations, weights = make_inputs(2, [(3, 3)], 2, 4, 0, 2)
    value.requires_grad_()
    out = ms_deform_attn(value, shapes, starts, locations, weights)
    assert out.shape == (2, 0, 8)
    out.sum().backward()
    assert torch.equal(value.grad, torch.zeros_like(value))


def test_torch_compile_without_graph_breaks():
    inputs = make_inputs(2, [(6, 5), (3, 3)], 2, 4, 7, 2, spread=1.2)
    for i in (0, 3, 4):
        inputs[i].requires_grad_()

    def attention(value, shapes, starts, locations, weights):
        return ms_deform_attn(value * 2, shapes, starts, locations, weights.softmax(-1)).relu()

    torch._dynamo.reset()
    compiled = torch.compile(attention, fullgraph=True, backend='aot_eager')
    out = compiled(*inputs)
    expected = attention(*inputs)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), [inputs[i] for i in (0, 3, 4)])
    expected_grads = torch.autograd.grad(expected.sum(), [inputs[i] for i in (0, 3, 4)])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_torch_export():

    class Attention(torch.nn.Module):

        def forward(self, value, shapes, starts, locations, weights):
            return ms_deform_attn(value, shapes, starts, locations, weights)

    inputs = make_inputs(1, [(6, 5), (3, 3)], 2, 4, 7, 2)
    program = torch.export.export(Attention(), tuple(inputs))
    assert any(node.target is torch.ops.mmdeform.ms_deform_attn_forward.default
               for node in program.graph.nodes)
    torch.testing.assert_close(program.module()(*inputs), ms_deform_attn_reference(*inputs))


def _bad(name, **changes):
    return pytest.param(name, changes, id=name + ': ' + ', '.join(changes))


def _replace(inputs, changes):
    value, shapes, starts, locations, weights = inputs
    named = dict(value=value, spatial_shapes=shapes, level_start_index=starts,
                 sampling_locations=locations, attention_weights=weights)
    for key, change in changes.items():
        named[key] = change(named[key])
    return list(named.values())


BAD_INPUTS = [
    _bad('value', value=lambda t: t.flatten(2)),
    _bad('sampling_locations', sampling_locations=lambda t: t[..., :1]),
    _bad('sampling_locations', sampling_locations=lambda t: t[:, :, :1]),
    _bad('attention_weights', attention_weights=lambda t: t[..., :1]),
    _bad('attention_weights', attention_weights=lambda t: t.double()),
    _bad('sampling_locations', sampling_locations=lambda t: t.double()),
    _bad('spatial_shapes', spatial_shapes=lambda t: t.int()),
    _bad('level_start_index', level_start_index=lambda t: t.int()),
    _bad('spatial_shapes', spatial_shapes=lambda t: t[:, :1]),
    _bad('level_start_index', level_start_index=lambda t: t[:1]),
    _bad('level_start_index', level_start_index=lambda t: t + 1),
    _bad('spatial_shapes', spatial_shapes=lambda t: t * 2),
    _bad('spatial_shapes', spatial_shapes=lambda t: t - t),
    _bad('value', value=lambda t: t[:, 1:]),
    _bad('value', value=lambda t: t.transpose(2, 3)),
    _bad('sampling_locations', sampling_locations=lambda t: t.transpose(1, 2)),
    _bad('value', value=lambda t: t.int()),
]


@pytest.mark.parametrize('name, changes', BAD_INPUTS)
def test_bad_input_names_the_argument(name, changes):
    inputs = _replace(make_inputs(2, [(4, 5), (2, 3)], 2, 4, 6, 2), changes)
    with pytest.raises(RuntimeError, match=name):
        ms_deform_attn(*inputs)


def test_bad_grad_output_names_the_argument():
    inputs = make_inputs(2, [(4, 5), (2, 3)], 2, 4, 6, 2)
    with pytest.raises(RuntimeError, match='grad_output'):
        torch.ops.mmdeform.ms_deform_attn_backward(torch.zeros(2, 6, 7), *inputs)


@requires_cuda
@pytest.mark.parametrize('dtype, atol', [(torch.float64, 1e-10), (torch.float32, 1e-5),
                                         (torch.float16, 1e-2), (torch.bfloat16, 5e-2)],
                         ids=str)
@pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())
def test_cuda_matches_reference(case, dtype, atol):
    *sizes, spread = case
    inputs = make_inputs(*sizes, dtype=torch.float64, device='cuda', spread=spread)
    grad_output = torch.randn(sizes[0], sizes[4], sizes[2] * sizes[3], dtype=torch.float64,
                              device='cuda')
    differentiable = (0, 3, 4)
    ref_args = [t.clone().requires_grad_(i in differentiable) for i, t in enumerate(inputs)]
    expected = ms_deform_attn_reference(*ref_args)
    expected.backward(grad_output)
    args = [(t.to(dtype) if t.is_floating_point() else t.clone()).requires_grad_(
        i in differentiable) for i, t in enumerate(inputs)]
    out = ms_deform_attn(*args)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected.detach(), atol=atol, rtol=atol)
    out.backward(grad_output.to(dtype))
    scale = 1 if dtype in (torch.float64, torch.float32) else 20  # locations' grads are large
    for i in differentiable:
        torch.testing.assert_close(args[i].grad.double(), ref_args[i].grad,
                                   atol=atol * scale, rtol=atol * scale)


@requires_cuda
def test_cuda_gradcheck():
    inputs = make_inputs(2, [(5, 4), (3, 2), (1, 1)], 2, 3, 4, 2, dtype=torch.float64,
                         device='cuda', spread=1.3)
    for i in (0, 3, 4):
        inputs[i].requires_grad_()
    assert torch.autograd.gradcheck(ms_deform_attn, inputs, nondet_tol=1e-12)


@requires_cuda
def test_cuda_device_mismatch_names_the_argument():
    value, shapes, starts, locations, weights = make_inputs(2, [(4, 5)], 2, 4, 6, 2,
                                                            device='cuda')
    with pytest.raises(RuntimeError, match='sampling_locations'):
        ms_deform_attn(value, shapes, starts, locations.cpu(), weights)
