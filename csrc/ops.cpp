// Schemas and contract of the native cubecrop ops. Kernels register per dispatch key in
// cpu/ and cuda/ (<op>_kernel.{cpp,cu}); argument checks shared by both hosts are in
// check.h, the per-voxel math in cubecrop_math.h; fake kernels, autograd and FLOP
// formulas live in Python (cubecrop/_native.py), as in torchvision. docs/kernels.md
// describes the kernels.
//
// crop_cubes(video, centers, size, padding_mode) -> out
//   video   (N, C, T, H, W), float16/bfloat16/float32/float64, any strides
//   centers (N, K, 3) as (t, y, x) in voxels; float32 (float64 for a float64 video)
//   size    [Dt, Dh, Dw], all >= 1
//   padding_mode 0 = zeros, 1 = border
//   out     (N, K, C, Dt, Dh, Dw), video's dtype, contiguous; accumulated in
//           acc_type (float32, float64 for float64)
//
// crop_cubes_backward(grad_out, video, centers, size, padding_mode,
//                     need_video_grad, need_centers_grad) -> (grad_video, grad_centers)
//   grad_out (N, K, C, Dt, Dh, Dw) of the video's dtype; a gradient that is not
//   needed is returned as an empty (0-element) tensor. grad_video is contiguous and
//   deterministic on CPU, and on CUDA under torch.use_deterministic_algorithms; the
//   centre gradient is bitwise reproducible on both.
//
// crop_cubes_int(video, centers, size, channels_last, mean, std, out_dtype) -> out
//   video   (N, C, T, H, W), or (N, T, H, W, C) with channels_last; any real dtype
//   centers (N, K, 3) float64 (starts are rounded in float64 by every backend)
//   start = round(c - D/2) clamped so the cube lies inside (size <= extent)
//   mean/std optional (C,) float32
//   out     (N, K, C, Dt, Dh, Dw) of out_dtype
//
// Edge cases, the same on every backend (Python reference, CPU, CUDA, Triton):
//   - K = 0, N = 0 or C = 0: an empty output of the shape above, no kernel launch;
//     the backward returns zero-filled gradients of the input shapes.
//   - T, H or W == 0: an error "video must have T, H, W >= 1, got shape ...", for
//     every op and padding mode (a zeros-padded crop of an empty video is refused,
//     not silently zero).
//   - the fused normalisation of crop_cubes_int is out = (x - mean) / std
//     (cubecrop::normalise) with true division, computed in float32, or in float64
//     when out_dtype is float64, then rounded once to out_dtype; mean alone divides
//     by 1, std alone subtracts 0.
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
