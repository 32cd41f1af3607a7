// Fused CPU kernels. Forward: parallel over (batch, query); each output row is accumulated
// over the L*K samples in a small buffer, with no N*Lq*M*D*L*K intermediate. Backward: parallel
// over (batch, head) slices; value's gradient for head m only receives from head m, so each
// slice is written by one thread in a fixed order: no atomics, deterministic for any number of
// threads. Both are vectorized over the head's D contiguous channels.
#include "../ms_deform_attn.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

// fp32/fp64 kernels are compiled twice, for AVX2+FMA and for the baseline ISA; the loader picks
// one for the machine (GCC/Clang function multiversioning on x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define MSDA_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MSDA_MULTIVERSION
#endif
#define MSDA_INLINE inline __attribute__((always_inline))

namespace mmdeform {
namespace {

template <typename scalar_t>
struct Args {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* value;
  const int64_t* shapes;  // (L, 2) as (H, W)
  const int64_t* starts;  // (L,)
  const scalar_t* loc;
  const scalar_t* attn;
  const scalar_t* grad_out;  // backward only
  scalar_t* out;             // forward only
  acc_t* grad_value;         // backward only, accumulated in acc_t
  scalar_t* grad_loc;
  scalar_t* grad_attn;
  int64_t N, S, M, D, L, K, Lq;
};

// Issues the loads of a corner's D channels early: the corners of the L*K samples are scattered
// over the maps, so the kernels first locate all of a query-head's samples and prefetch them,
// then accumulate.
inline void prefetch(const void* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(static_cast<const char*>(p) + b);
}

// One sample's corners and where its level starts, for the current (batch, query, head).
template <typename acc_t>
struct Sample {
  BilinearCorners<acc_t> c;
  int64_t level_offset;  // element offset of (n, level start, m, 0) in value
  int64_t W;             // the level's width
  bool valid;
};

// Locates the L*K samples of (n, q, m) and prefetches their corners in value (and grad_value).
template <typename scalar_t, typename acc_t>
MSDA_INLINE void locate_samples(const Args<scalar_t>& a, int64_t n, int64_t m, int64_t D,
                                const scalar_t* loc_qm, Sample<acc_t>* samples) {
  const int64_t row = a.M * D;
  for (int64_t l = 0; l < a.L; ++l) {
    const int64_t H = a.shapes[2 * l], W = a.shapes[2 * l + 1];
    const int64_t level_offset = (n * a.S + a.starts[l]) * row + m * D;
    for (int64_t k = 0; k < a.K; ++k) {
      const int64_t i = l * a.K + k;
      Sample<acc_t>& s = samples[i];
      s.level_offset = level_offset;
      s.W = W;
      s.valid = bilinear_corners<acc_t>(loc_qm[2 * i], loc_qm[2 * i + 1], H, W, s.c);
      if (!s.valid) continue;
      for (int j = 0; j < 4; ++j) {
        if (!s.c.inside[j]) continue;
        const int64_t p = level_offset + s.c.pixel(j, s.W) * row;
        prefetch(a.value + p, D * sizeof(scalar_t));
        if (a.grad_value != nullptr) prefetch(a.grad_value + p, D * sizeof(acc_t));
      }
    }
  }
}

// Output rows nq in [begin, end) (nq = n * Lq + q). kD > 0 fixes the head dims at compile time.
// Per (query, head): first locate the L*K samples, fold each corner's bilinear weight with the
// attention weight and prefetch the corner's channels; then accumulate four corners per pass.
template <int kD, typename scalar_t>
MSDA_INLINE void forward_rows(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = kD > 0 ? kD : a.D;
  const int64_t row = a.M * D;  // stride between positions of value and between output rows
  const int64_t LK = a.L * a.K;
  acc_t fixed[kD > 0 ? kD : 1];
  std::vector<acc_t> dynamic(kD > 0 ? 0 : D);
  acc_t* acc = kD > 0 ? fixed : dynamic.data();
  // Corners outside the map read this zero row with weight 0, so the sum has no branches
  // (and a NaN elsewhere in value cannot leak in).
  const std::vector<scalar_t> zeros(D, scalar_t(0));
  std::vector<const scalar_t*> corner_rows(4 * LK);
  std::vector<acc_t> corner_weights(4 * LK);
  for (int64_t nq = begin; nq < end; ++nq) {
    const int64_t n = nq / a.Lq;
    for (int64_t m = 0; m < a.M; ++m) {
      const int64_t first = (nq * a.M + m) * LK;  // index of sample (n, q, m, 0, 0)
      int64_t corners = 0;
      for (int64_t l = 0; l < a.L; ++l) {
        const int64_t H = a.shapes[2 * l], W = a.shapes[2 * l + 1];
        const scalar_t* value_l = a.value + (n * a.S + a.starts[l]) * row + m * D;
        for (int64_t k = 0; k < a.K; ++k) {
          const int64_t i = first + l * a.K + k;
          BilinearCorners<acc_t> c;
          if (!bilinear_corners<acc_t>(a.loc[2 * i], a.loc[2 * i + 1], H, W, c)) continue;
          const acc_t attention = a.attn[i];
          for (int j = 0; j < 4; ++j, ++corners) {
            corner_rows[corners] = c.inside[j] ? value_l + c.pixel(j, W) * row : zeros.data();
            corner_weights[corners] = c.inside[j] ? attention * c.weight(j) : acc_t(0);
            prefetch(corner_rows[corners], D * sizeof(scalar_t));
          }
        }
      }
      for (int64_t d = 0; d < D; ++d) acc[d] = 0;
      // (Unrolling this loop would stop GCC from vectorizing the channel loop inside.)
#pragma GCC unroll 1
      for (int64_t j = 0; j < corners; j += 4) {
        const scalar_t *v0 = corner_rows[j], *v1 = corner_rows[j + 1],
                       *v2 = corner_rows[j + 2], *v3 = corner_rows[j + 3];
        const acc_t w0 = corner_weights[j], w1 = corner_weights[j + 1],
                    w2 = corner_weights[j + 2], w3 = corner_weights[j + 3];
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) {
          acc[d] += w0 * static_cast<acc_t>(v0[d]) + w1 * static_cast<acc_t>(v1[d]) +
                    w2 * static_cast<acc_t>(v2[d]) + w3 * static_cast<acc_t>(v3[d]);
        }
      }
      scalar_t* out_qm = a.out + nq * row + m * D;
      for (int64_t d = 0; d < D; ++d) out_qm[d] = static_cast<scalar_t>(acc[d]);
    }
  }
}

// (batch, head) slices nm in [begin, end) (nm = n * M + m).
template <int kD, typename scalar_t>
MSDA_INLINE void backward_slices(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = kD > 0 ? kD : a.D;
  const int64_t row = a.M * D;
  const int64_t LK = a.L * a.K;
  std::vector<Sample<acc_t>> samples(LK);
  for (int64_t nm = begin; nm < end; ++nm) {
    const int64_t n = nm / a.M, m = nm % a.M;
    for (int64_t q = 0; q < a.Lq; ++q) {
      const int64_t nq = n * a.Lq + q;
      const int64_t first = (nq * a.M + m) * LK;
      locate_samples(a, n, m, D, a.loc + 2 * first, samples.data());
      const scalar_t* grad_out_qm = a.grad_out + nq * row + m * D;
      for (int64_t i = 0; i < LK; ++i) {
        const Sample<acc_t>& s = samples[i];
        if (!s.valid) continue;  // grad_loc and grad_attn stay 0
        const acc_t attention = a.attn[first + i];
        acc_t g_attn = 0, g_x = 0, g_y = 0;
        for (int j = 0; j < 4; ++j) {
          if (!s.c.inside[j]) continue;
          // One pass over the channels: <grad_out, v> and grad_v += A * w * grad_out.
          const int64_t p = s.level_offset + s.c.pixel(j, s.W) * row;
          const scalar_t* v = a.value + p;
          acc_t* grad_v = a.grad_value + p;
          const acc_t w = attention * s.c.weight(j);
          acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; ++d) {
            const acc_t g = static_cast<acc_t>(grad_out_qm[d]);
            dot += g * static_cast<acc_t>(v[d]);
            grad_v[d] += w * g;
          }
          g_attn += s.c.weight(j) * dot;
          g_x += s.c.dweight_dx(j) * dot;
          g_y += s.c.dweight_dy(j) * dot;
        }
        // d x_pix / d loc_x = W and d y_pix / d loc_y = H.
        const int64_t l = i / a.K;
        a.grad_attn[first + i] = static_cast<scalar_t>(g_attn);
        a.grad_loc[2 * (first + i)] =
            static_cast<scalar_t>(attention * g_x * static_cast<acc_t>(a.shapes[2 * l + 1]));
        a.grad_loc[2 * (first + i) + 1] =
            static_cast<scalar_t>(attention * g_y * static_cast<acc_t>(a.shapes[2 * l]));
      }
    }
  }
}

// The paper's head dims (256 / 8 = 32) get fully unrolled channel loops.
template <typename scalar_t>
MSDA_INLINE void forward_any(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if (a.D == 32) return forward_rows<32>(a, begin, end);
  forward_rows<0>(a, begin, end);
}

template <typename scalar_t>
MSDA_INLINE void backward_any(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if (a.D == 32) return backward_slices<32>(a, begin, end);
  backward_slices<0>(a, begin, end);
}

// Reduced precision types: baseline ISA only.
template <typename scalar_t>
void forward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  forward_any(a, begin, end);
}
template <typename scalar_t>
void backward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  backward_any(a, begin, end);
}

MSDA_MULTIVERSION void forward_range(const Args<float>& a, int64_t begin, int64_t end) {
  forward_any(a, begin, end);
}
MSDA_MULTIVERSION void forward_range(const Args<double>& a, int64_t begin, int64_t end) {
  forward_any(a, begin, end);
}
MSDA_MULTIVERSION void backward_range(const Args<float>& a, int64_t begin, int64_t end) {
  backward_any(a, begin, end);
}
MSDA_MULTIVERSION void backward_range(const Args<double>& a, int64_t begin, int64_t end) {
  backward_any(a, begin, end);
}

template <typename scalar_t>
Args<scalar_t> make_args(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index, const at::Tensor& loc,
                         const at::Tensor& attn) {
  Args<scalar_t> a{};
  a.value = value.const_data_ptr<scalar_t>();
  a.shapes = spatial_shapes.const_data_ptr<int64_t>();
  a.starts = level_start_index.const_data_ptr<int64_t>();
  a.loc = loc.const_data_ptr<scalar_t>();
  a.attn = attn.const_data_ptr<scalar_t>();
  a.N = value.size(0);
  a.S = value.size(1);
  a.M = value.size(2);
  a.D = value.size(3);
  a.Lq = loc.size(1);
  a.L = loc.size(3);
  a.K = loc.size(4);
  return a;
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  check_arguments(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_level_layout_on_host(spatial_shapes, level_start_index, value.size(1));
  at::Tensor out = at::empty({value.size(0), sampling_locations.size(1), value.size(2) * value.size(3)},
                             value.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "ms_deform_attn_forward_cpu", [&] {
    auto a = make_args<scalar_t>(value, spatial_shapes, level_start_index, sampling_locations,
                                 attention_weights);
    a.out = out.mutable_data_ptr<scalar_t>();
    // A row costs M*L*K samples; aim for chunks of a few thousand samples.
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, a.M * a.L * a.K));
    at::parallel_for(0, a.N * a.Lq, grain,
                     [&](int64_t begin, int64_t end) { forward_range(a, begin, end); });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_arguments(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                  grad_output);
  check_level_layout_on_host(spatial_shapes, level_start_index, value.size(1));
  // Reduced-precision value gradients are accumulated in fp32 and rounded once at the end.
  const auto acc_dtype = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  at::Tensor grad_loc = at::zeros_like(sampling_locations);
  at::Tensor grad_attn = at::zeros_like(attention_weights);
  if (grad_attn.numel() > 0 && value.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                    "ms_deform_attn_backward_cpu", [&] {
      auto a = make_args<scalar_t>(value, spatial_shapes, level_start_index, sampling_locations,
                                   attention_weights);
      a.grad_out = grad_output.const_data_ptr<scalar_t>();
      a.grad_value = grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>();
      a.grad_loc = grad_loc.mutable_data_ptr<scalar_t>();
      a.grad_attn = grad_attn.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, a.N * a.M, 1,
                       [&](int64_t begin, int64_t end) { backward_range(a, begin, end); });
    });
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace mmdeform
