// CUDA kernels. Forward: one thread per output element (n, q, m, d), so the reads of value
// along d are coalesced and the output is written once, without atomics. Backward: one thread
// per sample (n, q, m, l, k); it owns that sample's location and weight gradients and scatters
// into value's gradient with atomics (accumulated in fp32 for fp16/bf16). Any batch size works
// (no im2col_step); indices are 64-bit when a tensor is too large for 32-bit ones.
#include "../ms_deform_attn.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <limits>

namespace mmdeform {
namespace {

constexpr int kThreads = 256;

struct Sizes {
  int64_t N, S, M, D, L, K, Lq;
  explicit Sizes(const at::Tensor& value, const at::Tensor& loc)
      : N(value.size(0)), S(value.size(1)), M(value.size(2)), D(value.size(3)),
        L(loc.size(3)), K(loc.size(4)), Lq(loc.size(1)) {}
};

int64_t num_blocks(int64_t total) {
  return std::min<int64_t>((total + kThreads - 1) / kThreads, std::numeric_limits<int32_t>::max());
}

// 32-bit index arithmetic is faster; use it when every index (and the grid-stride overshoot)
// stays far below 2^31.
bool fits_int32(std::initializer_list<int64_t> numels) {
  for (int64_t n : numels) {
    if (n >= (int64_t(1) << 30)) return false;
  }
  return true;
}

template <typename scalar_t, typename index_t>
__global__ void forward_kernel(index_t total, index_t S, index_t M, index_t D, index_t L,
                               index_t K, index_t Lq, const scalar_t* __restrict__ value,
                               const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts,
                               const scalar_t* __restrict__ loc,
                               const scalar_t* __restrict__ attn, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t row = M * D;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t idx = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const index_t d = idx % D;
    const index_t m = (idx / D) % M;
    const index_t nq = idx / row;  // n * Lq + q
    const index_t n = nq / Lq;
    const scalar_t* value_nmd = value + n * S * row + m * D + d;
    const index_t first_sample = (nq * M + m) * L * K;
    acc_t acc = 0;
    for (index_t l = 0; l < L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* value_l = value_nmd + static_cast<index_t>(starts[l]) * row;
      for (index_t k = 0; k < K; ++k) {
        const index_t i = first_sample + l * K + k;
        BilinearCorners<acc_t> c;
        if (!bilinear_corners<acc_t>(static_cast<acc_t>(loc[2 * i]),
                                     static_cast<acc_t>(loc[2 * i + 1]), H, W, c)) {
          continue;
        }
        acc_t sample = 0;
        for (int j = 0; j < 4; ++j) {
          if (c.inside[j]) {
            sample += c.weight(j) * static_cast<acc_t>(value_l[static_cast<index_t>(c.pixel(j, W)) * row]);
          }
        }
        acc += static_cast<acc_t>(attn[i]) * sample;
      }
    }
    out[idx] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename index_t>
__global__ void backward_kernel(index_t total, index_t S, index_t M, index_t D, index_t L,
                                index_t K, index_t Lq, const scalar_t* __restrict__ grad_out,
                                const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts,
                                const scalar_t* __restrict__ loc,
                                const scalar_t* __restrict__ attn,
                                at::opmath_type<scalar_t>* __restrict__ grad_value,
                                scalar_t* __restrict__ grad_loc,
                                scalar_t* __restrict__ grad_attn) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t row = M * D;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    // i enumerates samples (n, q, m, l, k) in the layout of attention_weights.
    const index_t l = (i / K) % L;
    const index_t m = (i / (K * L)) % M;
    const index_t nq = i / (K * L * M);
    const index_t n = nq / Lq;
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    BilinearCorners<acc_t> c;
    if (!bilinear_corners<acc_t>(static_cast<acc_t>(loc[2 * i]),
                                 static_cast<acc_t>(loc[2 * i + 1]), H, W, c)) {
      grad_attn[i] = grad_loc[2 * i] = grad_loc[2 * i + 1] = scalar_t(0);
      continue;
    }
    const acc_t a = static_cast<acc_t>(attn[i]);
    const index_t level_offset = (n * S + static_cast<index_t>(starts[l])) * row + m * D;
    index_t corner[4];
    for (int j = 0; j < 4; ++j) {
      corner[j] = level_offset + static_cast<index_t>(c.pixel(j, W)) * row;
    }
    const scalar_t* grad_out_qm = grad_out + nq * row + m * D;
    acc_t dot[4] = {0, 0, 0, 0};  // <grad_out, value at corner j>
    for (index_t d = 0; d < D; ++d) {
      const acc_t g = static_cast<acc_t>(grad_out_qm[d]);
      for (int j = 0; j < 4; ++j) {
        if (!c.inside[j]) continue;
        dot[j] += g * static_cast<acc_t>(value[corner[j] + d]);
        atomicAdd(grad_value + corner[j] + d, a * c.weight(j) * g);
      }
    }
    acc_t g_attn = 0, g_x = 0, g_y = 0;
    for (int j = 0; j < 4; ++j) {
      g_attn += c.weight(j) * dot[j];
      g_x += c.dweight_dx(j) * dot[j];
      g_y += c.dweight_dy(j) * dot[j];
    }
    // d x_pix / d loc_x = W and d y_pix / d loc_y = H.
    grad_attn[i] = static_cast<scalar_t>(g_attn);
    grad_loc[2 * i] = static_cast<scalar_t>(a * g_x * static_cast<acc_t>(W));
    grad_loc[2 * i + 1] = static_cast<scalar_t>(a * g_y * static_cast<acc_t>(H));
  }
}

}  // namespace

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s(value, sampling_locations);
  at::Tensor out = at::empty({s.N, s.Lq, s.M * s.D}, value.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "ms_deform_attn_forward_cuda", [&] {
    auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      forward_kernel<scalar_t, index_t><<<num_blocks(total), kThreads, 0, stream>>>(
          total, s.S, s.M, s.D, s.L, s.K, s.Lq, value.const_data_ptr<scalar_t>(),
          spatial_shapes.const_data_ptr<int64_t>(), level_start_index.const_data_ptr<int64_t>(),
          sampling_locations.const_data_ptr<scalar_t>(),
          attention_weights.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fits_int32({value.numel(), sampling_locations.numel(), total})) {
      launch(int32_t(0));
    } else {
      launch(int64_t(0));
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
               grad_output);
  // The value gradient is summed with atomicAdd in no fixed order: under
  // torch.use_deterministic_algorithms(True) this warns or raises, as torch's own ops do.
  at::globalContext().alertNotDeterministic("ms_deform_attn_backward_cuda");
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s(value, sampling_locations);
  // fp16/bf16 value gradients are accumulated in fp32 and rounded once at the end.
  const auto acc_dtype = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  at::Tensor grad_loc = at::zeros_like(sampling_locations);
  at::Tensor grad_attn = at::zeros_like(attention_weights);
  const int64_t total = attention_weights.numel();
  if (total > 0 && value.numel() > 0) {
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                    "ms_deform_attn_backward_cuda", [&] {
      auto launch = [&](auto index_zero) {
        using index_t = decltype(index_zero);
        backward_kernel<scalar_t, index_t><<<num_blocks(total), kThreads, 0, stream>>>(
            total, s.S, s.M, s.D, s.L, s.K, s.Lq, grad_output.const_data_ptr<scalar_t>(),
            value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
            level_start_index.const_data_ptr<int64_t>(),
            sampling_locations.const_data_ptr<scalar_t>(),
            attention_weights.const_data_ptr<scalar_t>(),
            grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(),
            grad_loc.mutable_data_ptr<scalar_t>(), grad_attn.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (fits_int32({value.numel(), sampling_locations.numel(), grad_output.numel()})) {
        launch(int32_t(0));
      } else {
        launch(int64_t(0));
      }
    });
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace mmdeform
