// Schemas of the native cubecrop ops. Kernels register per dispatch key in
// cpu/ and cuda/; fake kernels, autograd and FLOP formulas live in Python
// (cubecrop/_native.py), as in torchvision.
//
// crop_cubes(video, centers, size, padding_mode) -> out
//   video   (N, C, T, H, W), float16/bfloat16/float32/float64, any strides
//   centers (N, K, 3) as (t, y, x) in voxels; float32 (float64 for a float64 video)
//   size    [Dt, Dh, Dw], all >= 1
//   padding_mode 0 = zeros, 1 = border
//   out     (N, K, C, Dt, Dh, Dw), video's dtype, contiguous
//
// crop_cubes_backward(grad_out, video, centers, size, padding_mode,
//                     need_video_grad, need_centers_grad) -> (grad_video, grad_centers)
//   reads grad_out once for both gradients; a gradient that is not needed is
//   returned as an empty (0-element) tensor. grad_video is deterministic on CPU.
//
// crop_cubes_int(video, centers, size, channels_last, mean, std, out_dtype) -> out
//   video   (N, C, T, H, W), or (N, T, H, W, C) with channels_last; any real dtype
//   centers (N, K, 3) float64 (starts are rounded in float64 by every backend)
//   start = round(c - D/2) clamped so the cube lies inside (size <= extent)
//   mean/std optional (C,) float32: out = (video - mean) / std, fused
//   out     (N, K, C, Dt, Dh, Dw) of out_dtype
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing cubecrop._C only loads this library so its registrations run.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(cubecrop, m) {
  m.def("crop_cubes(Tensor video, Tensor centers, int[3] size, int padding_mode) -> Tensor");
  m.def(
      "crop_cubes_backward(Tensor grad_out, Tensor video, Tensor centers, int[3] size, "
      "int padding_mode, bool need_video_grad, bool need_centers_grad) -> (Tensor, Tensor)");
  m.def(
      "crop_cubes_int(Tensor video, Tensor centers, int[3] size, bool channels_last, "
      "Tensor? mean, Tensor? std, ScalarType out_dtype) -> Tensor");
}
