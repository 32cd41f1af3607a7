// The CUDA kernels of multi-scale deformable attention, written in plain CUDA C++ that also
// compiles as host code: the tests run this very source on the CPU under a model of CUDA's
// execution (tests/cuda_emulation). The kernels therefore use only what that model
// implements faithfully: grid-stride loops, global loads and stores, atomicAdd, and
// __shfl_xor_sync over whole warps. No shared memory, no block barriers.
//
// Forward: a thread per (n, q, m, group of channels) loads each corner's channels as one 16-byte
// vector, so a head's corner is one contiguous read, and writes its output once.
// Backward: a warp segment of `lanes` threads per (n, q, m) walks the head's channels together.
// At every corner the segment's value-gradient atomics land on one contiguous row (coalesced:
// 4 sectors per corner for D=32 in fp32, where a thread per sample looping over D needs 32).
// Location and weight gradients are reduced over the channels with shuffles in a fixed order,
// then written once. The value gradient is summed either with float atomics (fast, order-
// dependent rounding) or as fixed-point integers (deterministic: integer sums do not depend on
// the order of the atomics).
#pragma once

#include "../ms_deform_attn.h"

#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>

namespace mmdeform {
namespace cuda {

constexpr int kThreads = 256;  // per block; a multiple of the warp size
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

#ifndef MSDA_TRAP  // print why, then fail a device-side assertion, as torch's kernels do
#define MSDA_TRAP(...)                                                                       \
  do {                                                                                       \
    printf(__VA_ARGS__);                                                                     \
    printf("\n");                                                                            \
    CUDA_KERNEL_ASSERT_MSG(false, "ms_deform_attn: invalid level layout (printed above)"); \
  } while (0)
#endif

struct DeviceLayoutFail {
  template <typename... Args>
  __device__ void operator()(const char* format, Args... args) const {
    MSDA_TRAP(format, args...);
  }
};

// The level layout, checked where it lies (device memory) so that the host never waits for the
// device. Launched with one thread ahead of each kernel on the same stream: a bad layout fails
// before any kernel reads value through it.
__global__ void check_level_layout_kernel(const int64_t* shapes, const int64_t* starts,
                                          int64_t L, int64_t S) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    check_level_layout(shapes, starts, L, S, DeviceLayoutFail{});
  }
}

template <typename scalar_t, typename index_t>
struct Problem {
  const scalar_t* value;  // (N, S, M, D)
  const int64_t* shapes;  // (L, 2) as (H, W)
  const int64_t* starts;  // (L,)
  const scalar_t* loc;    // (N, Lq, M, L, K, 2) as (x, y)
  const scalar_t* attn;   // (N, Lq, M, L, K)
  index_t N, S, M, D, L, K, Lq;
};

template <typename index_t>
__device__ __forceinline__ index_t thread_index() {
  return static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

template <typename index_t>
__device__ __forceinline__ index_t grid_stride() {
  return static_cast<index_t>(blockDim.x) * gridDim.x;
}

// kVec channels loaded or stored as one access.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Vec {
  T v[kVec];
};

// kL, kK: the number of levels and points when fixed at compile time (the common 4 and 4, whose
// loops then unroll), 0 when read from the problem.
template <typename scalar_t, typename index_t, int kVec, int kL, int kK>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Problem<scalar_t, index_t> p, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  using vec_t = Vec<scalar_t, kVec>;
  const index_t L = kL > 0 ? kL : p.L, K = kK > 0 ? kK : p.K;
  const index_t groups = p.D / kVec;  // vectors per head
  const index_t row = p.M * p.D;      // elements per position of value
  const index_t total = p.N * p.Lq * p.M * groups;
  for (index_t idx = thread_index<index_t>(); idx < total; idx += grid_stride<index_t>()) {
    const index_t channel = idx % groups * kVec;
    const index_t head = idx / groups;  // (n * Lq + q) * M + m
    const index_t n = head / (p.M * p.Lq);
    const scalar_t* value_nm = p.value + n * p.S * row + head % p.M * p.D + channel;
    acc_t acc[kVec] = {};
#pragma unroll
    for (index_t l = 0; l < L; ++l) {
      const int64_t H = p.shapes[2 * l], W = p.shapes[2 * l + 1];
      const scalar_t* value_l = value_nm + static_cast<index_t>(p.starts[l]) * row;
#pragma unroll
      for (index_t k = 0; k < K; ++k) {
        const index_t i = (head * L + l) * K + k;
        BilinearCorners<acc_t> c;
        if (!bilinear_corners<acc_t>(p.loc[2 * i], p.loc[2 * i + 1], H, W, c)) continue;
        const acc_t a = p.attn[i];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (!c.inside[j]) continue;
          const vec_t v = *reinterpret_cast<const vec_t*>(
              value_l + static_cast<index_t>(c.pixel(j, W)) * row);
          const acc_t aw = a * c.weight(j);
#pragma unroll
          for (int t = 0; t < kVec; ++t) acc[t] += aw * static_cast<acc_t>(v.v[t]);
        }
      }
    }
    vec_t result;
#pragma unroll
    for (int t = 0; t < kVec; ++t) result.v[t] = static_cast<scalar_t>(acc[t]);
    *reinterpret_cast<vec_t*>(out + head * p.D + channel) = result;
  }
}

// True for finite x; false for NaN and infinities (x - x is NaN for both).
template <typename T>
__device__ __forceinline__ bool is_finite(T x) {
  return x - x == T(0);
}

// The value gradient summed with float atomics: fast; the rounding depends on their order.
template <typename acc_t>
struct AtomicSum {
  acc_t* grad;  // like value, in acc_t
  __device__ __forceinline__ void load() {}
  template <typename index_t>
  __device__ __forceinline__ void add(index_t i, acc_t g) {
    atomicAdd(grad + i, g);
  }
};

// The value gradient summed as fixed-point integers, g * scale rounded to the nearest integer:
// integer addition is associative, so the bits do not depend on the order of the atomics.
// `scale` (a power of two, computed on the device) keeps every sum within 2^62. Non-finite
// terms go to a float side sum instead: a sum of infinities and NaNs is the same in any order.
template <typename acc_t>
struct FixedPointSum {
  unsigned long long* fixed;  // like value, two's complement int64
  acc_t* nonfinite;           // like value
  const double* scale_ptr;    // one element
  double scale;
  __device__ __forceinline__ void load() { scale = *scale_ptr; }
  template <typename index_t>
  __device__ __forceinline__ void add(index_t i, acc_t g) {
    if (is_finite(g)) {
      atomicAdd(fixed + i, static_cast<unsigned long long>(llrint(static_cast<double>(g) * scale)));
    } else {
      atomicAdd(nonfinite + i, g);
    }
  }
};

// The sum of v over the `lanes` consecutive lanes of an aligned warp segment (`lanes` a power of
// two up to 32), in a fixed butterfly order: every lane of the segment gets the same bits.
// All 32 lanes of the warp must call it.
template <typename T>
__device__ __forceinline__ T segment_sum(T v, int lanes) {
  for (int offset = lanes / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullWarp, v, offset);
  }
  return v;
}

// Lanes per head in the backward: a power of two; the head's channel d is walked by lane d % lanes.
inline int backward_lanes(int64_t D) {
  int lanes = 1;
  while (lanes < D && lanes < kWarpSize) lanes *= 2;
  return lanes;
}

template <typename scalar_t, typename index_t, int kL, int kK, typename GradValue>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(Problem<scalar_t, index_t> p, const scalar_t* __restrict__ grad_out,
                    GradValue grad_value, scalar_t* __restrict__ grad_loc,
                    scalar_t* __restrict__ grad_attn, int lanes) {
  using acc_t = at::opmath_type<scalar_t>;
  grad_value.load();
  const index_t L = kL > 0 ? kL : p.L, K = kK > 0 ? kK : p.K;
  const index_t row = p.M * p.D;
  const index_t total = p.N * p.Lq * p.M * lanes;
  const index_t warp_lane = threadIdx.x % kWarpSize;
  // Whole warps iterate while any of their lanes has work (`idx - warp_lane` is the warp's
  // first index), so that all 32 lanes reach every shuffle. total is a multiple of `lanes`, so
  // the idle lanes of the last iteration form whole segments.
  for (index_t idx = thread_index<index_t>(); idx - warp_lane < total;
       idx += grid_stride<index_t>()) {
    const bool active = idx < total;
    const index_t lane = idx % lanes;
    const index_t head = active ? idx / lanes : 0;  // (n * Lq + q) * M + m
    const index_t n = head / (p.M * p.Lq);
    const index_t value_nm = n * p.S * row + head % p.M * p.D;  // offset of (n, 0, m, 0)
    const scalar_t* grad_out_h = grad_out + head * p.D;
#pragma unroll
    for (index_t l = 0; l < L; ++l) {
      const int64_t H = p.shapes[2 * l], W = p.shapes[2 * l + 1];
      const index_t value_l = value_nm + static_cast<index_t>(p.starts[l]) * row;
#pragma unroll
      for (index_t k = 0; k < K; ++k) {
        const index_t i = (head * L + l) * K + k;
        acc_t a = 0, g_attn = 0, g_x = 0, g_y = 0;  // this lane's share of the head's sums
        BilinearCorners<acc_t> c;
        if (active && bilinear_corners<acc_t>(p.loc[2 * i], p.loc[2 * i + 1], H, W, c)) {
          a = p.attn[i];
          for (index_t d = lane; d < p.D; d += lanes) {
            const acc_t g = grad_out_h[d];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              if (!c.inside[j]) continue;
              const index_t at = value_l + static_cast<index_t>(c.pixel(j, W)) * row + d;
              const acc_t gv = g * static_cast<acc_t>(p.value[at]);
              g_attn += c.weight(j) * gv;
              g_x += c.dweight_dx(j) * gv;
              g_y += c.dweight_dy(j) * gv;
              grad_value.add(at, a * c.weight(j) * g);
            }
          }
        }
        g_attn = segment_sum(g_attn, lanes);
        g_x = segment_sum(g_x, lanes);
        g_y = segment_sum(g_y, lanes);
        if (active && lane == 0) {
          // d x_pix / d loc_x = W and d y_pix / d loc_y = H.
          grad_attn[i] = static_cast<scalar_t>(g_attn);
          grad_loc[2 * i] = static_cast<scalar_t>(a * g_x * static_cast<acc_t>(W));
          grad_loc[2 * i + 1] = static_cast<scalar_t>(a * g_y * static_cast<acc_t>(H));
        }
      }
    }
  }
}

}  // namespace cuda
}  // namespace mmdeform
