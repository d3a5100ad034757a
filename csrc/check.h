// Argument checks of the native ops, shared by the CPU and CUDA hosts. The Python layer
// validates every argument before a backend runs; these are the second line for callers
// of torch.ops.cubecrop.* and say the same: the argument, its value, what was expected.
// Light ATen headers only (the CUDA host is on the build's critical path).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <vector>

#include "cubecrop_math.h"

namespace cubecrop::check {

// `t` lives on the backend's device type ("cpu" or "cuda" backend) and, for a
// second tensor, on the video's device.
inline void device(const at::Tensor& t, const char* name, c10::DeviceType type, const char* backend) {
  TORCH_CHECK(t.defined(), name, " must be a tensor, got an undefined one");
  TORCH_CHECK(t.device().type() == type, name, " must be a ", c10::DeviceTypeName(type), " tensor for the ", backend,
              " backend, got one on ", t.device());
}

inline void same_device(const at::Tensor& t, const char* name, const at::Tensor& video) {
  TORCH_CHECK(t.device() == video.device(), name, " is on ", t.device(), " but the video is on ", video.device(),
              ": put both on one device");
}

// A 5-D video whose spatial extents are all >= 1. `ncthw` is the (N, C, T, H, W) view
// (a channels-last video permuted), `layout` names the layout the caller passes.
inline void video(const at::Tensor& given, const at::Tensor& ncthw, const char* layout) {
  TORCH_CHECK(given.dim() == 5, "video must be a 5-D tensor ", layout, ", got shape ", given.sizes());
  TORCH_CHECK(ncthw.size(2) >= 1 && ncthw.size(3) >= 1 && ncthw.size(4) >= 1, "video must have T, H, W >= 1, got shape ",
              given.sizes());
}

inline void float_video(const at::Tensor& v) {
  const auto t = v.scalar_type();
  TORCH_CHECK(t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble,
              "video must be float16, bfloat16, float32 or float64 for crop_cubes, got ", t);
}

// The dtype crop_cubes' centres (and their gradient) have: float32, float64 for a float64 video.
inline at::ScalarType centers_dtype(const at::Tensor& video) {
  return video.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void centers(const at::Tensor& c, const at::Tensor& video, at::ScalarType dtype) {
  TORCH_CHECK(c.dim() == 3 && c.size(0) == video.size(0) && c.size(2) == 3, "centers must have shape (N=",
              video.size(0), ", K, 3), got ", c.sizes());
  TORCH_CHECK(c.scalar_type() == dtype, "centers must be ", dtype, " here, got ", c.scalar_type());
}

inline std::array<int64_t, 3> size(at::IntArrayRef s) {
  TORCH_CHECK(s.size() == 3, "size must have 3 values (Dt, Dh, Dw), got ", s.size());
  TORCH_CHECK(s[0] >= 1 && s[1] >= 1 && s[2] >= 1, "size must be >= 1 on every axis, got ", s);
  return {s[0], s[1], s[2]};
}

inline void padding_mode(int64_t mode) {
  TORCH_CHECK(mode == kZeros || mode == kBorder, "padding_mode must be 0 (zeros) or 1 (border), got ", mode);
}

// crop_cubes_int: the cube must fit inside the video (its start is clamped inside).
inline void int_size_fits(const std::array<int64_t, 3>& s, at::IntArrayRef given, const at::Tensor& ncthw) {
  TORCH_CHECK(s[0] <= ncthw.size(2) && s[1] <= ncthw.size(3) && s[2] <= ncthw.size(4), "size ", given,
              " must fit inside the video's (T, H, W) = ", ncthw.sizes().slice(2), " for crop_cubes_int");
}

inline std::vector<int64_t> out_shape(const at::Tensor& ncthw, const at::Tensor& c, const std::array<int64_t, 3>& s) {
  return {ncthw.size(0), c.size(1), ncthw.size(1), s[0], s[1], s[2]};
}

inline void grad_out(const at::Tensor& g, const at::Tensor& video, const std::vector<int64_t>& shape) {
  TORCH_CHECK(g.sizes() == at::IntArrayRef(shape), "grad_out must have shape ", at::IntArrayRef(shape), ", got ",
              g.sizes());
  TORCH_CHECK(g.scalar_type() == video.scalar_type(), "grad_out must have the video's dtype ", video.scalar_type(),
              ", got ", g.scalar_type());
}

// mean / std of crop_cubes_int: float32, one value per channel.
inline void statistic(const at::Tensor& t, const char* name, int64_t channels) {
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == channels, name, " must have shape (C=", channels, "), got ", t.sizes());
}

inline void int_out_dtype(bool normalise, at::ScalarType out_dtype) {
  TORCH_CHECK(!normalise || at::isFloatingType(out_dtype),
              "out_dtype must be a floating dtype when mean/std are given, got ", out_dtype);
}

// The inputs crop_cubes and crop_cubes_backward share.
inline std::array<int64_t, 3> crop_inputs(const at::Tensor& v, const at::Tensor& c, at::IntArrayRef s, int64_t mode,
                                          c10::DeviceType type, const char* backend) {
  device(v, "video", type, backend);
  video(v, v, "(N, C, T, H, W)");
  float_video(v);
  device(c, "centers", type, backend);
  same_device(c, "centers", v);
  centers(c, v, centers_dtype(v));
  padding_mode(mode);
  return size(s);
}

inline void int_video_dtype(const at::Tensor& v) {
  TORCH_CHECK(!at::isComplexType(v.scalar_type()) && v.scalar_type() != at::kBool,
              "video must have a real dtype for crop_cubes_int, got ", v.scalar_type());
}

}  // namespace cubecrop::check
