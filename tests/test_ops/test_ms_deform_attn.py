"""The native op on the CPU: gradcheck, a hand-computed sample, determinism, tracing, bad input.
(Values and gradients in every dtype, on every backend: test_kernels.py.)"""
import pytest
import torch
from op_testing import BACKENDS, backends, make_problem, raw_backward, rounded, to

from mmdeform.ops import level_start_index, ms_deform_attn, ms_deform_attn_reference

def make_inputs(*sizes, dtype=torch.float32, device='cpu', spread=1.0):
    inputs, _ = make_problem(*sizes, spread=spread)
    return to(rounded(inputs, dtype), device)


def test_gradcheck():
    inputs = make_inputs(2, [(5, 4), (3, 2), (1, 1)], 2, 3, 4, 2, dtype=torch.float64,
                         spread=1.3)
    for i in (0, 3, 4):
        inputs[i].requires_grad_()
    assert torch.autograd.gradcheck(ms_deform_attn, inputs)


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


def _bad(name, layout=False, **changes):
    """layout: a level layout that contradicts the tensors, which the GPU detects on the device
    (a trap that ends the CUDA context: not tested here on CUDA, see test_kernels.py)."""
    return pytest.param(name, layout, changes, id=name + ': ' + ', '.join(changes))


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
    _bad('level_start_index', layout=True, level_start_index=lambda t: t + 1),
    _bad('spatial_shapes', layout=True, spatial_shapes=lambda t: t * 2),
    _bad('spatial_shapes', layout=True, spatial_shapes=lambda t: t - t),
    _bad('value', layout=True, value=lambda t: t[:, 1:].contiguous()),
    _bad('value', value=lambda t: t.transpose(2, 3)),
    _bad('sampling_locations', sampling_locations=lambda t: t.transpose(1, 2)),
    _bad('value', value=lambda t: t.int()),
]


@backends
@pytest.mark.parametrize('name, layout, changes', BAD_INPUTS)
def test_bad_input_names_the_argument(backend, name, layout, changes):
    op, device = BACKENDS[backend]
    if layout and device == 'cuda':
        pytest.skip('a device-side trap ends the CUDA context')
    inputs = _replace(make_inputs(2, [(4, 5), (2, 3)], 2, 4, 6, 2, device=device), changes)
    with pytest.raises(RuntimeError, match=name):
        op(*inputs)


@backends
def test_bad_grad_output_names_the_argument(backend):
    device = BACKENDS[backend][1]
    inputs = make_inputs(2, [(4, 5), (2, 3)], 2, 4, 6, 2, device=device)
    with pytest.raises(RuntimeError, match='grad_output'):
        raw_backward(backend)(torch.zeros(2, 6, 7, device=device), *inputs)
