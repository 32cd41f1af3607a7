// The host side of the CUDA op: argument checks, output allocation, the choice of kernel
// (dtype, index width, vector width, fixed or runtime L and K, fast or deterministic backward)
// and the launches. Generic over the launcher, so that the tests run exactly this code with
// the kernels emulated on the CPU (tests/cuda_emulation); ms_deform_attn_cuda.cu
// launches them on the GPU. Nothing here reads device memory on the host: no synchronization.
//
// A Launcher has `force_int64` (bool), `max_blocks()` and
// `operator()(kernel, blocks, threads, args...)`.
#pragma once

#include "ms_deform_attn_kernels.cuh"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <tuple>
#include <type_traits>

namespace mmdeform {
namespace cuda {

template <typename Launcher>
int64_t num_blocks(const Launcher& launch, int64_t threads) {
  return std::max<int64_t>(1, std::min((threads + kThreads - 1) / kThreads, launch.max_blocks()));
}

// 32-bit index arithmetic is faster; it is used when every index, and the grid-stride loops'
// overshoot past the end, stays below 2^31.
inline bool fits_int32(std::initializer_list<int64_t> sizes) {
  for (int64_t n : sizes) {
    if (n >= (int64_t(1) << 30)) return false;
  }
  return true;
}

template <typename scalar_t, typename index_t>
Problem<scalar_t, index_t> make_problem(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                        const at::Tensor& level_start_index,
                                        const at::Tensor& loc, const at::Tensor& attn) {
  const auto size = [](const at::Tensor& t, int dim) { return static_cast<index_t>(t.size(dim)); };
  return {value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
          level_start_index.const_data_ptr<int64_t>(), loc.const_data_ptr<scalar_t>(),
          attn.const_data_ptr<scalar_t>(), size(value, 0), size(value, 1), size(value, 2),
          size(value, 3), size(loc, 3), size(loc, 4), size(loc, 1)};
}

// Calls body(index_t{}, kL, kK) with the kernel variant for these sizes: L = K = 4 fixed at
// compile time (the paper's, and every config's, shape) or read at run time; 64-bit indices
// (always with runtime L and K) when the tensors are too large for 32-bit ones.
template <typename Body>
void dispatch_variant(bool int64_indices, int64_t L, int64_t K, const Body& body) {
  using Four = std::integral_constant<int, 4>;
  using Runtime = std::integral_constant<int, 0>;
  if (int64_indices) {
    body(int64_t{}, Runtime{}, Runtime{});
  } else if (L == 4 && K == 4) {
    body(int32_t{}, Four{}, Four{});
  } else {
    body(int32_t{}, Runtime{}, Runtime{});
  }
}

template <typename Launcher>
void launch_layout_check(const Launcher& launch, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index, int64_t S) {
  launch(check_level_layout_kernel, 1, 1, spatial_shapes.const_data_ptr<int64_t>(),
         level_start_index.const_data_ptr<int64_t>(), spatial_shapes.size(0), S);
}

inline bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <typename Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& value,
                   const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                   const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  check_arguments(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  launch_layout_check(launch, spatial_shapes, level_start_index, value.size(1));
  at::Tensor out = at::empty(
      {value.size(0), sampling_locations.size(1), value.size(2) * value.size(3)}, value.options());
  if (out.numel() == 0) return out;
  const bool int64_indices =
      launch.force_int64 || !fits_int32({value.numel(), sampling_locations.numel(), out.numel()});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "ms_deform_attn_forward_cuda", [&] {
    // 16-byte loads: 4 fp32, 8 fp16/bf16 or 2 fp64 channels, where the head's channels allow.
    constexpr int kWide = 16 / sizeof(scalar_t);
    const bool wide = value.size(3) % kWide == 0 && aligned(value.const_data_ptr(), 16);
    const int64_t threads = out.numel() / (wide ? kWide : 1);
    dispatch_variant(int64_indices, sampling_locations.size(3), sampling_locations.size(4),
                     [&](auto index_zero, auto kL, auto kK) {
      using index_t = decltype(index_zero);
      const auto p = make_problem<scalar_t, index_t>(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights);
      if (wide) {
        launch(forward_kernel<scalar_t, index_t, kWide, kL, kK>, num_blocks(launch, threads),
               kThreads, p, out.mutable_data_ptr<scalar_t>());
      } else {
        launch(forward_kernel<scalar_t, index_t, 1, kL, kK>, num_blocks(launch, threads),
               kThreads, p, out.mutable_data_ptr<scalar_t>());
      }
    });
  });
  return out;
}

// |sum of the terms a * w * g of one value-gradient element| <= Lq*K * max|a| * max|g|: a
// position of level l is a corner of at most one of the 4 corners of each of the Lq*K samples
// on level l of a (batch, head), and w <= 1. The scale is the largest power of two that keeps
// that bound within 2^62 (finite terms only; non-finite ones are summed apart).
inline at::Tensor fixed_point_scale(const at::Tensor& grad_output,
                                    const at::Tensor& attention_weights) {
  const auto finite_absmax = [](const at::Tensor& t) {
    return t.abs().nan_to_num(0, 0, 0).amax().to(at::kDouble);
  };
  const int64_t terms = attention_weights.size(1) * attention_weights.size(4);  // Lq * K
  const at::Tensor bound =
      finite_absmax(attention_weights) * finite_absmax(grad_output) * static_cast<double>(terms);
  // A zero bound (all terms zero) gives 2^1000, harmless: every fixed-point term is 0.
  return at::exp2(at::floor(at::log2(static_cast<double>(int64_t(1) << 62) / bound))
                      .clamp(-1000, 1000));
}

// Deterministic (bit-identical whatever the schedule) when torch asks for deterministic
// algorithms: torch.use_deterministic_algorithms(True), or --deterministic in tools/train.py.
template <typename Launcher>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const Launcher& launch, const at::Tensor& grad_output, const at::Tensor& value,
    const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  check_arguments(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                  grad_output);
  launch_layout_check(launch, spatial_shapes, level_start_index, value.size(1));
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  // The value gradient is summed in fp32 for fp16/bf16 and rounded once at the end.
  const auto acc_options = value.options().dtype(at::toOpMathType(value.scalar_type()));
  at::Tensor grad_loc = at::empty_like(sampling_locations);  // every element is written
  at::Tensor grad_attn = at::empty_like(attention_weights);
  // The fast path's sum, or the deterministic path's side sum of non-finite terms.
  at::Tensor grad_value = at::zeros(value.sizes(), acc_options);
  at::Tensor fixed, scale;  // deterministic: the fixed-point sum and its scale
  const int64_t heads =  // (n, q, m) triples
      attention_weights.size(0) * attention_weights.size(1) * attention_weights.size(2);
  if (attention_weights.numel() > 0 && value.numel() > 0) {
    const bool int64_indices = launch.force_int64 ||
        !fits_int32({value.numel(), sampling_locations.numel(), grad_output.numel(),
                     heads * kWarpSize});
    const int lanes = backward_lanes(value.size(3));
    if (deterministic) {
      fixed = at::zeros(value.sizes(), value.options().dtype(at::kLong));
      scale = fixed_point_scale(grad_output, attention_weights);
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                    "ms_deform_attn_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      dispatch_variant(int64_indices, sampling_locations.size(3), sampling_locations.size(4),
                       [&](auto index_zero, auto kL, auto kK) {
        using index_t = decltype(index_zero);
        const auto p = make_problem<scalar_t, index_t>(value, spatial_shapes, level_start_index,
                                                       sampling_locations, attention_weights);
        const auto run = [&](auto sum) {
          launch(backward_kernel<scalar_t, index_t, kL, kK, decltype(sum)>,
                 num_blocks(launch, heads * lanes), kThreads, p,
                 grad_output.const_data_ptr<scalar_t>(), sum,
                 grad_loc.mutable_data_ptr<scalar_t>(), grad_attn.mutable_data_ptr<scalar_t>(),
                 lanes);
        };
        if (deterministic) {
          run(FixedPointSum<acc_t>{
              reinterpret_cast<unsigned long long*>(fixed.mutable_data_ptr<int64_t>()),
              grad_value.mutable_data_ptr<acc_t>(), scale.const_data_ptr<double>(), 0.0});
        } else {
          run(AtomicSum<acc_t>{grad_value.mutable_data_ptr<acc_t>()});
        }
      });
    });
  } else {
    grad_loc.zero_();
    grad_attn.zero_();
  }
  if (fixed.defined()) {
    // Unscaled (scale is a power of two), plus the non-finite side sum (0 where there is none).
    grad_value = fixed.to(at::kDouble).div_(scale).add_(grad_value);
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace cuda
}  // namespace mmdeform
