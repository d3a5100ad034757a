// Helpers shared by the CPU kernels: argument checks, the accumulation type,
// per-cube taps, and the row primitives the kernels are built from.
//
// The kernels work row by row along W (the innermost axis of a contiguous
// video): every row of a cube uses the same weights, so the inner loops are
// plain branch-free loops over contiguous arrays that the compiler vectorises.
// Rows that touch the x-border, use a non-unit W stride or a half type are
// first copied into a small per-thread scratch row, so one fast loop serves
// every case.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "check.h"
#include "cubecrop_math.h"

namespace cubecrop::cpu {

struct CubeSize {
  int64_t t, h, w;
};

inline CubeSize cube_size(const std::array<int64_t, 3>& s) { return {s[0], s[1], s[2]}; }

constexpr c10::DeviceType kCpu = c10::DeviceType::CPU;

// The taps of one cube along (t, y, x), computed once per cube, plus for each
// axis whether the centre gradient flows (it does not where axis_taps clamped
// the start: the reference's clamp has zero gradient there).
template <typename acc_t>
struct CubeTaps {
  AxisTaps<acc_t> t, y, x;
  acc_t grad_scale[3];
  bool inside;  // every tap (window start .. start + D per axis) reads inside the input: no padding
};

template <typename acc_t>
CubeTaps<acc_t> cube_taps(const acc_t* center, CubeSize size, int64_t extent_t, int64_t extent_h, int64_t extent_w) {
  CubeTaps<acc_t> taps;
  taps.t = axis_taps<acc_t>(center[0], size.t, extent_t);
  taps.y = axis_taps<acc_t>(center[1], size.h, extent_h);
  taps.x = axis_taps<acc_t>(center[2], size.w, extent_w);
  taps.grad_scale[0] = axis_center_grad_scale<acc_t>(center[0], size.t, extent_t);
  taps.grad_scale[1] = axis_center_grad_scale<acc_t>(center[1], size.h, extent_h);
  taps.grad_scale[2] = axis_center_grad_scale<acc_t>(center[2], size.w, extent_w);
  taps.inside = taps.t.start >= 0 && taps.t.start + size.t < extent_t && taps.y.start >= 0 &&
                taps.y.start + size.h < extent_h && taps.x.start >= 0 && taps.x.start + size.w < extent_w;
  return taps;
}

// Every cube's taps, once per call: entry n * K + k for the (N, K, 3) centres of a
// (N, C, T, H, W) video.
template <typename acc_t>
std::vector<CubeTaps<acc_t>> all_cube_taps(const at::Tensor& video, const at::Tensor& centers, CubeSize size) {
  const int64_t count = centers.size(0) * centers.size(1);
  const acc_t* cp = centers.const_data_ptr<acc_t>();
  std::vector<CubeTaps<acc_t>> taps(count);
  for (int64_t i = 0; i < count; ++i) taps[i] = cube_taps<acc_t>(cp + 3 * i, size, video.size(2), video.size(3), video.size(4));
  return taps;
}

// The element strides of an (N, C, T, H, W) video, for structured bindings.
inline std::array<int64_t, 5> video_strides(const at::Tensor& video) {
  return {video.stride(0), video.stride(1), video.stride(2), video.stride(3), video.stride(4)};
}

// A read-only window row: `count` values of input row `row` (a pointer to x = 0,
// W stride `stride_w`) at x positions x0, x0 + 1, ..., as acc_t, with the
// padding rule applied to positions outside [0, width). Points straight into
// the input when it can (same type, unit stride, window inside), else fills
// `scratch` (count values).
template <typename scalar_t, typename acc_t>
const acc_t* window_row(const scalar_t* row, int64_t stride_w, int64_t width, int64_t x0, int64_t count,
                        int64_t padding_mode, acc_t* scratch) {
  const bool inside = x0 >= 0 && x0 + count <= width;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (inside && stride_w == 1) return row + x0;
  }
  if (inside) {
    const scalar_t* src = row + x0 * stride_w;
    if (stride_w == 1) {
      for (int64_t j = 0; j < count; ++j) scratch[j] = static_cast<acc_t>(src[j]);
    } else {
      for (int64_t j = 0; j < count; ++j) scratch[j] = static_cast<acc_t>(src[j * stride_w]);
    }
    return scratch;
  }
  for (int64_t j = 0; j < count; ++j) {
    const int64_t xi = resolve_index(x0 + j, width, padding_mode);
    scratch[j] = xi < 0 ? acc_t(0) : static_cast<acc_t>(row[xi * stride_w]);
  }
  return scratch;
}

// `count` contiguous values as acc_t: the input itself when it already is acc_t.
template <typename scalar_t, typename acc_t>
const acc_t* as_acc_row(const scalar_t* row, int64_t count, acc_t* scratch) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return row;
  } else {
    for (int64_t j = 0; j < count; ++j) scratch[j] = static_cast<acc_t>(row[j]);
    return scratch;
  }
}

// Lanes of the fixed-order partial sums: a reduction over a row keeps kLanes
// independent sums (vectorisable, and the same order on every run and thread
// count), then adds the lanes in index order.
constexpr int kLanes = 8;

template <typename acc_t>
acc_t sum_lanes(const acc_t lanes[kLanes]) {
  acc_t total = 0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// A new output tensor. A large CPU allocation is a fresh mmap that the kernel
// faults in 4 KiB page by page on first touch; for a memory-bound crop those
// faults cost several times the copy itself (measured here: 33 ms to clone
// 38 MB, 6 ms to copy it into a touched buffer). Advising transparent huge
// pages on the 2 MiB-aligned interior before the first touch cuts the faults
// 512-fold. It is advice only (no-op where THP is off; the same as
// THP_MEM_ALLOC_ENABLE=1 does for every PyTorch allocation), and the tensor
// is an ordinary at::empty tensor.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const uintptr_t bytes = out.nbytes();
  if (bytes >= 4 * kHugePage) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t lo = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t hi = (begin + bytes) & ~(kHugePage - 1);
    if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#endif
  return out;
}

// Rows per parallel_for chunk: about 32k output values, at least one unit.
inline int64_t grain_for(int64_t values_per_unit) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, values_per_unit));
}

}  // namespace cubecrop::cpu
