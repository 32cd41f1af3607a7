// The op's schema and per-device kernels. Autograd and the fake (meta) kernel used by
// torch.compile / torch.export are registered from Python (mmdeform/ops/ms_deform_attn.py).
#include <Python.h>
#include <torch/library.h>

#include "ms_deform_attn.h"

// Importing mmdeform._C runs the static registrations below; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(mmdeform, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmdeform, CPU, m) {
  m.impl("ms_deform_attn_forward", &mmdeform::ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_backward", &mmdeform::ms_deform_attn_backward_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmdeform, CUDA, m) {
  m.impl("ms_deform_attn_forward", &mmdeform::ms_deform_attn_forward_cuda);
  m.impl("ms_deform_attn_backward", &mmdeform::ms_deform_attn_backward_cuda);
}
#endif
