// The CUDA op: ms_deform_attn_host.h's checks, choices and launches, with the kernels of
// ms_deform_attn_kernels.cuh launched on the current stream of value's device.
#include "ms_deform_attn_host.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

namespace mmdeform {
namespace {

struct CudaLauncher {
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  bool force_int64 = false;

  int64_t max_blocks() const { return std::numeric_limits<int32_t>::max(); }

  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), int64_t blocks, int threads, Args&&... args) const {
    kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(std::forward<Args>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  return cuda::forward(CudaLauncher{}, value, spatial_shapes, level_start_index,
                       sampling_locations, attention_weights);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  return cuda::backward(CudaLauncher{}, grad_output, value, spatial_shapes, level_start_index,
                        sampling_locations, attention_weights);
}

}  // namespace mmdeform
