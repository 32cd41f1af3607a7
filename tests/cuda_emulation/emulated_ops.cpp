// The CUDA op (ops/csrc/cuda: its host code and its kernels' own source) compiled for the CPU,
// with the kernels run by cuda_emulation.h, as torch ops on CPU tensors:
//   torch.ops.mmdeform_emulated.ms_deform_attn_forward(value, spatial_shapes, level_start_index,
//       sampling_locations, attention_weights, max_blocks, seed, force_int64)
//   torch.ops.mmdeform_emulated.ms_deform_attn_backward(grad_output, <the same five>,
//       max_blocks, seed, force_int64)
// max_blocks caps the grid (grid-stride loops wrap); seed < 0 runs blocks and threads in index
// order, else in an order shuffled with that seed; force_int64 takes the 64-bit index kernels.
#include "cuda_emulation.h"  // first: it stands in for CUDA's keywords and built-ins

#include "cuda/ms_deform_attn_host.h"

#include <torch/library.h>

namespace {

struct EmulatedLauncher {
  int64_t blocks_cap;
  int64_t seed;
  bool force_int64;

  int64_t max_blocks() const { return blocks_cap; }

  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), int64_t blocks, int threads, Args&&... args) const {
    cuda_emulation::launch(kernel, static_cast<unsigned>(blocks), static_cast<unsigned>(threads),
                           seed, std::forward<Args>(args)...);
  }
};

EmulatedLauncher launcher(int64_t max_blocks, int64_t seed, bool force_int64) {
  TORCH_CHECK(max_blocks >= 1, "max_blocks must be positive");
  return {max_blocks, seed, force_int64};
}

// Device-side traps become Python RuntimeErrors with the kernel's message.
template <typename Fn>
auto trapped(const Fn& fn) {
  try {
    return fn();
  } catch (const cuda_emulation::Trap& trap) {
    TORCH_CHECK(false, "emulated CUDA kernel trapped: ", trap.what());
  }
}

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights, int64_t max_blocks, int64_t seed,
                   bool force_int64) {
  return trapped([&] {
    return mmdeform::cuda::forward(launcher(max_blocks, seed, force_int64), value, spatial_shapes,
                                   level_start_index, sampling_locations, attention_weights);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights, int64_t max_blocks, int64_t seed, bool force_int64) {
  return trapped([&] {
    return mmdeform::cuda::backward(launcher(max_blocks, seed, force_int64), grad_output, value,
                                    spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights);
  });
}

}  // namespace

TORCH_LIBRARY(mmdeform_emulated, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, int max_blocks, int seed, "
      "bool force_int64) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights, "
      "int max_blocks, int seed, bool force_int64) -> (Tensor, Tensor, Tensor)");
  m.impl("ms_deform_attn_forward", c10::DispatchKey::CPU, TORCH_FN(forward));
  m.impl("ms_deform_attn_backward", c10::DispatchKey::CPU, TORCH_FN(backward));
}
