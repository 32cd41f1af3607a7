// Multi-scale deformable attention (Zhu et al., "Deformable DETR", eq. 3):
//   out[n, q, m*D + d] = sum_{l,k} A[n,q,m,l,k] * bilinear(value_l[n, :, m, d], loc[n,q,m,l,k])
// Shapes: value (N, S, M, D), spatial_shapes (L, 2) int64 as (H, W), level_start_index (L,)
// int64, sampling_locations (N, Lq, M, L, K, 2) as (x, y) in [0, 1], attention_weights
// (N, Lq, M, L, K) -> output (N, Lq, M*D).
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <tuple>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MSDA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MSDA_HOST_DEVICE inline
#endif

namespace mmdeform {

// The four corners of one bilinear sample, j = 0..3 in the order (y0,x0), (y0,x1), (y1,x0),
// (y1,x1) with x1 = x0 + 1, y1 = y0 + 1. Zero padding: a corner outside the map is not `inside`
// and contributes nothing.
template <typename T>
struct BilinearCorners {
  int64_t x0, y0;  // the top-left corner, in pixels
  T fx, fy;        // fractional parts: the weights of the right and bottom corners
  bool inside[4];

  MSDA_HOST_DEVICE int64_t pixel(int j, int64_t W) const {  // flat index y * W + x in the level
    return (y0 + (j >> 1)) * W + x0 + (j & 1);
  }
  MSDA_HOST_DEVICE T weight(int j) const {
    return ((j & 2) ? fy : T(1) - fy) * ((j & 1) ? fx : T(1) - fx);
  }
  MSDA_HOST_DEVICE T dweight_dx(int j) const {  // d weight / d x_pix
    return ((j & 2) ? fy : T(1) - fy) * ((j & 1) ? T(1) : T(-1));
  }
  MSDA_HOST_DEVICE T dweight_dy(int j) const {  // d weight / d y_pix
    return ((j & 1) ? fx : T(1) - fx) * ((j & 2) ? T(1) : T(-1));
  }
};

// Bilinear sampling at a normalized location, exactly as grid_sample(align_corners=False,
// padding_mode='zeros') with grid = 2 * loc - 1: x_pix = loc_x * W - 0.5, y_pix = loc_y * H - 0.5.
// Returns false when no corner lies inside the map (also for NaN or infinite locations),
// in which case the sample and its gradients are zero.
template <typename T>
MSDA_HOST_DEVICE bool bilinear_corners(T loc_x, T loc_y, int64_t H, int64_t W,
                                       BilinearCorners<T>& c) {
  const T x = loc_x * static_cast<T>(W) - T(0.5);
  const T y = loc_y * static_cast<T>(H) - T(0.5);
  // Checked before any float-to-int conversion, so huge or NaN locations are safe.
  if (!(x >= T(-1) && x < static_cast<T>(W) && y >= T(-1) && y < static_cast<T>(H))) {
    return false;
  }
  c.x0 = static_cast<int64_t>(floor(x));
  c.y0 = static_cast<int64_t>(floor(y));
  c.fx = x - static_cast<T>(c.x0);
  c.fy = y - static_cast<T>(c.y0);
  const bool left = c.x0 >= 0, right = c.x0 + 1 < W, top = c.y0 >= 0, bottom = c.y0 + 1 < H;
  c.inside[0] = top && left;
  c.inside[1] = top && right;
  c.inside[2] = bottom && left;
  c.inside[3] = bottom && right;
  return true;
}

// The level layout decides every memory read: each level's (H, W) must be positive,
// level_start_index the exclusive cumsum of H * W, and the levels must fill value's S positions.
// `fail(format, ...)` reports a violation printf-style and does not return: a TORCH_CHECK on
// the host, a failed device-side assertion on the GPU (where the layout is checked in device
// memory: reading it on the host would synchronize with the device).
template <typename Fail>
MSDA_HOST_DEVICE void check_level_layout(const int64_t* hw, const int64_t* start, int64_t L,
                                         int64_t S, const Fail& fail) {
  using ll = long long;
  int64_t expected_start = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = hw[2 * l], W = hw[2 * l + 1];
    if (!(H >= 1 && W >= 1)) {
      return fail("ms_deform_attn: spatial_shapes[%lld] = (%lld, %lld) must be positive (H, W)",
                  ll(l), ll(H), ll(W));
    }
    if (start[l] != expected_start) {
      return fail("ms_deform_attn: level_start_index[%lld] = %lld but the levels before it in "
                  "spatial_shapes hold %lld positions (level_start_index must be the exclusive "
                  "cumsum of H * W)", ll(l), ll(start[l]), ll(expected_start));
    }
    if (!(H <= S && W <= S && H * W <= S - expected_start)) {
      return fail("ms_deform_attn: spatial_shapes hold more positions than value's length S=%lld",
                  ll(S));
    }
    expected_start += H * W;
  }
  if (expected_start != S) {
    return fail("ms_deform_attn: value has S=%lld positions but spatial_shapes hold "
                "sum(H * W) = %lld", ll(S), ll(expected_start));
  }
}

// Validates every argument's rank, sizes, dtype, device and contiguity with errors that name
// the argument; grad_output is checked when defined (backward). Reads no tensor data.
void check_arguments(const at::Tensor& value, const at::Tensor& spatial_shapes,
                     const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                     const at::Tensor& attention_weights, const at::Tensor& grad_output = {});

// check_level_layout on CPU tensors, with the same messages as TORCH_CHECK errors.
void check_level_layout_on_host(const at::Tensor& spatial_shapes,
                                const at::Tensor& level_start_index, int64_t S);

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

#ifdef WITH_CUDA
at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);
#endif

}  // namespace mmdeform
