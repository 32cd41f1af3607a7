// Argument validation shared by every kernel: bad input gets an error naming the argument,
// never an out-of-bounds read.
#include "ms_deform_attn.h"

#include <ATen/ATen.h>

#include <cstdio>

namespace mmdeform {
namespace {

void check_tensor(const at::Tensor& t, const char* name, int64_t dim, const at::Tensor& value) {
  TORCH_CHECK(t.defined(), "ms_deform_attn: ", name, " is undefined");
  TORCH_CHECK(t.dim() == dim, "ms_deform_attn: ", name, " must have ", dim,
              " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.device() == value.device(), "ms_deform_attn: ", name, " is on ", t.device(),
              " but value is on ", value.device());
  TORCH_CHECK(t.is_contiguous(), "ms_deform_attn: ", name,
              " must be contiguous (call .contiguous() on it)");
}

void check_float(const at::Tensor& t, const char* name, const at::Tensor& value) {
  TORCH_CHECK(t.scalar_type() == value.scalar_type(), "ms_deform_attn: ", name, " has dtype ",
              t.scalar_type(), " but value has dtype ", value.scalar_type());
}

void check_int64(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kLong, "ms_deform_attn: ", name,
              " must be int64 (torch.long), got ", t.scalar_type());
}

}  // namespace

void check_arguments(const at::Tensor& value, const at::Tensor& spatial_shapes,
                     const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                     const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  check_tensor(value, "value", 4, value);
  TORCH_CHECK(at::isFloatingType(value.scalar_type()),
              "ms_deform_attn: value must be a floating point tensor, got ", value.scalar_type());
  check_tensor(spatial_shapes, "spatial_shapes", 2, value);
  check_int64(spatial_shapes, "spatial_shapes");
  check_tensor(level_start_index, "level_start_index", 1, value);
  check_int64(level_start_index, "level_start_index");
  check_tensor(sampling_locations, "sampling_locations", 6, value);
  check_float(sampling_locations, "sampling_locations", value);
  check_tensor(attention_weights, "attention_weights", 5, value);
  check_float(attention_weights, "attention_weights", value);

  const int64_t N = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t L = spatial_shapes.size(0);
  TORCH_CHECK(L >= 1 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must have shape (L, 2) with L >= 1, got ",
              spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.size(0) == L, "ms_deform_attn: level_start_index must have shape (",
              L, ",) to match spatial_shapes, got ", level_start_index.sizes());
  const auto& loc = sampling_locations;
  TORCH_CHECK(loc.size(0) == N && loc.size(2) == M && loc.size(3) == L && loc.size(5) == 2,
              "ms_deform_attn: sampling_locations must have shape (N=", N, ", Lq, M=", M,
              ", L=", L, ", K, 2), got ", loc.sizes());
  const int64_t Lq = loc.size(1), K = loc.size(4);
  TORCH_CHECK(attention_weights.sizes() == at::IntArrayRef({N, Lq, M, L, K}),
              "ms_deform_attn: attention_weights must have shape (", N, ", ", Lq, ", ", M, ", ", L,
              ", ", K, ") to match sampling_locations, got ", attention_weights.sizes());
  if (grad_output.defined()) {
    check_tensor(grad_output, "grad_output", 3, value);
    check_float(grad_output, "grad_output", value);
    TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({N, Lq, M * D}),
                "ms_deform_attn: grad_output must have shape (", N, ", ", Lq, ", ", M * D,
                "), got ", grad_output.sizes());
  }
}

void check_level_layout_on_host(const at::Tensor& spatial_shapes,
                                const at::Tensor& level_start_index, int64_t S) {
  TORCH_CHECK(spatial_shapes.is_cpu() && level_start_index.is_cpu(),
              "ms_deform_attn: the level layout can only be checked on the host for CPU tensors");
  const auto fail = [](const char* format, auto... args) {
    char message[320];
    std::snprintf(message, sizeof(message), format, args...);
    TORCH_CHECK(false, message);
  };
  check_level_layout(spatial_shapes.const_data_ptr<int64_t>(),
                     level_start_index.const_data_ptr<int64_t>(), spatial_shapes.size(0), S, fail);
}

}  // namespace mmdeform
