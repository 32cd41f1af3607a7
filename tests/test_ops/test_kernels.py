"""The CUDA kernels, run on a GPU ('cuda', skipped without one) and, everywhere, on the CPU under
an emulation of CUDA's execution ('emulated': the kernels' own source, see tests/cuda_emulation),
next to the CPU kernel ('cpu'), all against the grid_sample reference evaluated in fp64.

How the comparison stays honest in every dtype: the inputs are rounded to the dtype under test
first, and the reference runs in fp64 on those rounded values, so only the kernel's own
arithmetic is measured. The locations are multiples of 2^-12, so that x * W - 0.5 is exact in
every dtype and a rounded location cannot cross a pixel edge (where bilinear sampling's
derivative jumps). Each element's tolerance is a bound on its rounding error: the machine
epsilon of the result's dtype plus, per term the kernel sums in its accumulation type, that
type's epsilon, times the sum of the magnitudes of the terms (the same sum with absolute values,
computed in fp64). A wrong index, weight or sign is off by about the size of a term, far more.
"""
import math
import subprocess
import sys

import pytest
import torch
from cuda_emulation import emulated_ms_deform_attn
from op_testing import (BACKENDS, backends, dtypes, gpu_backends, make_problem, raw_backward,
                        requires_cuda, rounded, run, to)

from mmdeform.ops import deterministic_algorithms, ms_deform_attn, ms_deform_attn_reference

# (batch, level shapes (H, W), heads, head dims, queries, points, spread of the locations)
CASES = {
    'one level': (2, [(7, 5)], 2, 4, 9, 3, 1.0),
    'four levels, four points': (2, [(12, 7), (6, 4), (3, 2), (1, 1)], 4, 8, 7, 4, 1.2),
    '1x1 levels': (3, [(1, 1), (1, 1), (2, 1)], 2, 3, 5, 2, 1.0),
    'far outside [0, 1]': (2, [(6, 9), (3, 5)], 2, 4, 11, 4, 6.0),
    'paper heads, one query': (1, [(5, 6), (3, 3), (2, 2), (1, 2)], 8, 32, 1, 4, 1.0),
    'head dims 48': (2, [(6, 7), (3, 3)], 2, 48, 3, 4, 1.1),
    'batch 70': (70, [(4, 6), (2, 3)], 2, 8, 3, 2, 1.2),
    'paper sizes': (2, [(16, 24), (8, 12), (4, 6), (2, 3)], 8, 32, 12, 4, 1.1),
}
cases = pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())


def term_magnitudes(inputs, grad_output):
    """Per element of the output and of the three gradients, the sum of the absolute values
    of the terms that make it, in fp64."""
    value, shapes, starts, locations, weights = inputs

    def reference_gradient(value, weights, wrt):
        leaf = (value, weights)[wrt].clone().requires_grad_()
        args = [leaf, weights] if wrt == 0 else [value, leaf]
        out = ms_deform_attn_reference(args[0], shapes, starts, locations, args[1])
        return torch.autograd.grad(out, leaf, grad_output.abs())[0]

    out = ms_deform_attn_reference(value.abs(), shapes, starts, locations, weights.abs())
    # sum |a| w |g| (whatever the value), and sum_d |g| sum_j w_j |v_jd| (whatever the weights)
    grad_value = reference_gradient(value, weights.abs(), wrt=0)
    grad_weights = reference_gradient(value.abs(), weights, wrt=1)
    return out, grad_value, location_term_magnitudes(inputs, grad_output), grad_weights


def location_term_magnitudes(inputs, grad_output):
    """|a| * W * sum_d |g_d| * sum_j |dw_j/dx| |v_jd| for x, and the same with H and dw_j/dy
    for y, summed over the corners j inside the map."""
    value, shapes, starts, locations, weights = inputs
    N, _, M, D = value.shape
    _, Lq, _, L, K, _ = locations.shape
    grad = grad_output.view(N, Lq, M, 1, D).abs()
    result = torch.zeros_like(locations)
    for level, ((H, W), start) in enumerate(zip(shapes.tolist(), starts.tolist())):
        value_l = value[:, start:start + H * W].abs().permute(0, 2, 1, 3)  # (N, M, HW, D)
        x = locations[:, :, :, level, :, 0] * W - 0.5  # (N, Lq, M, K)
        y = locations[:, :, :, level, :, 1] * H - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            cx, cy = x0 + dx, y0 + dy
            inside = (cx >= 0) & (cx < W) & (cy >= 0) & (cy < H)
            pixel = torch.where(inside, cy * W + cx, 0).long()  # (N, Lq, M, K)
            index = pixel.permute(0, 2, 1, 3).reshape(N, M, Lq * K, 1).expand(-1, -1, -1, D)
            corner = value_l.gather(2, index).view(N, M, Lq, K, D).permute(0, 2, 1, 3, 4)
            dot = (corner * grad).sum(-1) * inside  # (N, Lq, M, K)
            result[:, :, :, level, :, 0] += dot * (fy if dy else 1 - fy) * W
            result[:, :, :, level, :, 1] += dot * (fx if dx else 1 - fx) * H
    return result * weights.abs()[..., None]


def assert_within(name, got, expected, magnitude, relative):
    """|got - expected| <= relative * magnitude + the spacing of got's subnormals, elementwise."""
    error = (got.double().cpu() - expected).abs()
    info = torch.finfo(got.dtype)
    bound = relative * magnitude + info.tiny * info.eps
    excess = error > bound
    if excess.any():
        worst = (error / bound.clamp_min(1e-300)).max()
        raise AssertionError(f'{name}: {int(excess.sum())} of {error.numel()} elements outside '
                             f'the rounding bound (worst: {float(worst):.3g} times the bound; '
                             f'max error {float(error.max()):.3g})')


def epsilons(dtype):
    """The result's epsilon and the accumulation type's."""
    accumulate = torch.float64 if dtype == torch.float64 else torch.float32
    return torch.finfo(dtype).eps, torch.finfo(accumulate).eps


def check_against_reference(result, exact_inputs, exact_grad, deterministic=False):
    """result: (out, grad_value, grad_locations, grad_weights) of a kernel in some dtype."""
    dtype = result[0].dtype
    value, _, _, locations, weights = exact_inputs
    D = value.shape[3]
    _, Lq, _, L, K, _ = locations.shape
    expected = run(ms_deform_attn_reference, exact_inputs, exact_grad)
    magnitudes = term_magnitudes(exact_inputs, exact_grad)
    eps, eps_acc = epsilons(dtype)
    value_terms = Lq * K  # terms of one value-gradient element, at most
    # Twice each bound: the fp64 reference rounds too.
    relative = {
        'output': 2 * (eps + eps_acc * (4 * L * K + 2)),
        'grad_value': 2 * (eps + eps_acc * (value_terms + 3)),
        'grad_locations': 2 * (eps + eps_acc * (4 * D + 6)),
        'grad_weights': 2 * (eps + eps_acc * (4 * D + 6)),
    }
    magnitude = dict(zip(relative, magnitudes))
    if deterministic:
        # Fixed point: each term rounds to a multiple of 1 / scale, with scale >= 2^61 / bound.
        bound = value_terms * weights.abs().max() * exact_grad.abs().max()
        magnitude['grad_value'] = magnitude['grad_value'] + value_terms * bound / 2**61 / relative[
            'grad_value']
    for name, got, want in zip(relative, result, expected):
        assert got.dtype == dtype, name
        assert_within(name, got, want, magnitude[name], relative[name])


@pytest.mark.parametrize('backend, deterministic', [
    ('cpu', False), ('emulated', False), ('emulated', True),
    pytest.param('cuda', False, marks=requires_cuda),
    pytest.param('cuda', True, marks=requires_cuda)],
    ids=['cpu', 'emulated-fast', 'emulated-deterministic', 'cuda-fast', 'cuda-deterministic'])
@dtypes
@cases
def test_kernels_match_the_reference(backend, deterministic, dtype, case):
    op, device = BACKENDS[backend]
    inputs, grad_output = make_problem(*case)
    inputs, grad_output = rounded(inputs, dtype), grad_output.to(dtype)
    with deterministic_algorithms(deterministic):
        result = run(op, to(inputs, device), grad_output.to(device))
    exact_inputs = [t.double() if t.is_floating_point() else t for t in inputs]
    check_against_reference(result, exact_inputs, grad_output.double(), deterministic)


# Many samples on a small map: each value-gradient element sums hundreds of terms.
CROWDED = (2, [(3, 3), (2, 2)], 2, 16, 60, 4, 1.1)


def emulated_gradients(inputs, grad_output, **launch):
    return run(lambda *args: emulated_ms_deform_attn(*args, **launch), inputs, grad_output)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16], ids=str)
def test_emulated_deterministic_backward_is_bit_identical_in_any_order(dtype):
    inputs, grad_output = make_problem(*CROWDED)
    inputs, grad_output = rounded(inputs, dtype), grad_output.to(dtype)
    launches = [dict(), dict(seed=1), dict(seed=2, max_blocks=3), dict(seed=3, force_int64=True)]
    with deterministic_algorithms(True):
        first, *others = [emulated_gradients(inputs, grad_output, **launch)
                          for launch in launches]
    for other in others:
        for a, b in zip(first, other):
            assert torch.equal(a, b)
    # The same orders change the fast backward's bits: the emulation does reorder the atomics,
    # so the test above could fail.
    fast = [emulated_gradients(inputs, grad_output, **launch)[1] for launch in launches[:3]]
    assert not all(torch.equal(fast[0], other) for other in fast[1:])


@pytest.mark.parametrize('launch', [dict(max_blocks=1), dict(max_blocks=3, seed=5),
                                    dict(force_int64=True), dict(force_int64=True, max_blocks=2)],
                         ids=['one block', 'three blocks, shuffled', 'int64 indices',
                              'int64 indices, two blocks'])
@pytest.mark.parametrize('case', [CASES['four levels, four points'], CASES['head dims 48']],
                         ids=['four levels, four points', 'head dims 48'])
def test_emulated_grid_stride_loops_and_int64_indices_give_the_same_bits(launch, case):
    inputs, grad_output = make_problem(*case)
    inputs, grad_output = rounded(inputs, torch.float32), grad_output.float()
    with deterministic_algorithms(True):
        expected = emulated_gradients(inputs, grad_output)
        got = emulated_gradients(inputs, grad_output, **launch)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_emulated_forward_without_aligned_vectors_gives_the_same_bits():
    inputs, _ = make_problem(*CASES['four levels, four points'])
    inputs = rounded(inputs, torch.float32)
    value = inputs[0]
    # The same values one element into a buffer: 16-byte loads are not aligned there.
    shifted = torch.empty(value.numel() + 1)[1:].view_as(value).copy_(value)
    assert shifted.data_ptr() % 16 != 0
    expected = emulated_ms_deform_attn(*inputs)
    assert torch.equal(emulated_ms_deform_attn(shifted, *inputs[1:]), expected)


@backends
@pytest.mark.parametrize('deterministic', [False, True], ids=['fast', 'deterministic'])
@pytest.mark.parametrize('empty', ['batch', 'queries', 'head dims', 'points'])
def test_empty_inputs(backend, deterministic, empty):
    op, device = BACKENDS[backend]
    sizes = dict(batch=2, queries=4, head_dims=4, points=2)
    sizes[empty.replace(' ', '_')] = 0
    inputs, grad_output = make_problem(sizes['batch'], [(3, 3), (1, 2)], 2, sizes['head_dims'],
                                       sizes['queries'], sizes['points'])
    with deterministic_algorithms(deterministic and backend != 'cpu'):
        out, grad_value, grad_locations, grad_weights = run(op, to(inputs, device),
                                                            grad_output.to(device))
    assert out.shape == grad_output.shape
    assert torch.equal(grad_value, torch.zeros_like(grad_value))
    assert torch.equal(grad_locations, torch.zeros_like(grad_locations))
    assert torch.equal(grad_weights, torch.zeros_like(grad_weights))


@backends
@pytest.mark.parametrize('deterministic', [False, True], ids=['fast', 'deterministic'])
def test_non_finite_locations_read_zeros(backend, deterministic):
    op, device = BACKENDS[backend]
    inputs, grad_output = make_problem(1, [(4, 4)], 1, 2, 4, 1, 1.0)
    inputs[3][0, :, 0, 0, 0] = torch.tensor(
        [[math.nan, 0.5], [math.inf, 0.5], [0.5, -math.inf], [1e30, -1e30]], dtype=torch.float64)
    with deterministic_algorithms(deterministic and backend != 'cpu'):
        out, grad_value, grad_locations, grad_weights = run(op, to(inputs, device),
                                                            grad_output.to(device))
    for t in (out, grad_value, grad_locations, grad_weights):
        assert torch.equal(t, torch.zeros_like(t))


@gpu_backends
def test_deterministic_backward_passes_non_finite_gradients_through(backend):
    op, device = BACKENDS[backend]
    inputs, grad_output = make_problem(1, [(3, 3)], 1, 2, 6, 2, 1.0)
    grad_output[0, 0, 0] = math.inf
    fast = run(op, to(inputs, device), grad_output.to(device))
    with deterministic_algorithms(True):
        deterministic = run(op, to(inputs, device), grad_output.to(device))
    for a, b in zip(fast[1:], deterministic[1:]):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())
        finite = a.isfinite()
        torch.testing.assert_close(a[finite], b[finite], atol=1e-12, rtol=1e-12)
    assert fast[1].isinf().any()  # the infinite gradient did reach value's


BAD_LAYOUTS = {
    'start index': lambda value, shapes, starts: (value, shapes, starts + 1),
    'value length': lambda value, shapes, starts: (value[:, 1:].contiguous(), shapes, starts),
    'empty level': lambda value, shapes, starts: (value, shapes * torch.tensor([1, 0]), starts),
    'too large level': lambda value, shapes, starts: (value, shapes * 2, starts),
}


@pytest.mark.parametrize('breakage', BAD_LAYOUTS.values(), ids=BAD_LAYOUTS.keys())
def test_emulated_layout_check_traps_with_the_cpu_kernels_message(breakage):
    inputs, grad_output = make_problem(2, [(4, 5), (2, 3)], 2, 4, 6, 2, 1.0)
    inputs = rounded(inputs, torch.float32)
    value, shapes, starts = breakage(*inputs[:3])
    bad = [value, shapes, starts, *inputs[3:]]
    with pytest.raises(RuntimeError) as cpu_error:
        ms_deform_attn(*bad)
    message = str(cpu_error.value).splitlines()[0]
    assert message.startswith('ms_deform_attn: ')
    for name, call in (('forward', lambda: emulated_ms_deform_attn(*bad)),
                       ('backward', lambda: raw_backward('emulated')(grad_output.float(), *bad))):
        with pytest.raises(RuntimeError, match='emulated CUDA kernel trapped') as error:
            call()
        assert message in str(error.value), name


@requires_cuda
def test_cuda_gradcheck():
    inputs, _ = make_problem(2, [(5, 4), (3, 2), (1, 1)], 2, 3, 4, 2, 1.3)
    inputs = to(inputs, 'cuda')
    for i in (0, 3, 4):
        inputs[i].requires_grad_()
    assert torch.autograd.gradcheck(ms_deform_attn, inputs, nondet_tol=1e-12)
    with deterministic_algorithms(True):
        assert torch.autograd.gradcheck(ms_deform_attn, inputs)


@requires_cuda
@pytest.mark.parametrize('deterministic', [False, True], ids=['fast', 'deterministic'])
def test_cuda_never_synchronizes(deterministic):
    inputs, grad_output = make_problem(*CASES['four levels, four points'])
    inputs, grad_output = to(inputs, 'cuda'), grad_output.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        with deterministic_algorithms(deterministic):
            run(ms_deform_attn, inputs, grad_output)
    finally:
        torch.cuda.set_sync_debug_mode('default')


@requires_cuda
def test_cuda_deterministic_backward_repeats_bit_for_bit():
    inputs, grad_output = make_problem(*CROWDED)
    inputs, grad_output = to(rounded(inputs, torch.float32), 'cuda'), grad_output.float().cuda()
    with deterministic_algorithms(True):
        first, second = (run(ms_deform_attn, inputs, grad_output) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@requires_cuda
def test_cuda_device_mismatch_names_the_argument():
    inputs, _ = make_problem(2, [(4, 5)], 2, 4, 6, 2, 1.0)
    value, shapes, starts, locations, weights = to(inputs, 'cuda')
    with pytest.raises(RuntimeError, match='sampling_locations'):
        ms_deform_attn(value, shapes, starts, locations.cpu(), weights)


BAD_LAYOUT_ON_CUDA = '''
import torch
from mmdeform.ops import ms_deform_attn, level_start_index
shapes = torch.tensor([[4, 5], [2, 3]], device='cuda')
value = torch.randn(1, 26, 1, 4, device='cuda')
out = ms_deform_attn(value, shapes, level_start_index(shapes) + 1,
                     torch.rand(1, 3, 1, 2, 1, 2, device='cuda'), torch.rand(1, 3, 1, 2, 1,
                     device='cuda'))
torch.cuda.synchronize()
'''


@requires_cuda
def test_cuda_bad_layout_traps_with_a_message():
    # A failed device-side assertion ends the CUDA context, so in a process of its own.
    done = subprocess.run([sys.executable, '-c', BAD_LAYOUT_ON_CUDA], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    # The kernel's printed reason, and torch's report of the failed device-side assertion.
    assert 'level_start_index[0] = 1' in done.stdout + done.stderr
    assert 'device-side assert' in done.stderr
