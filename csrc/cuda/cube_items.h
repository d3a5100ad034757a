// Per-item bodies of the CUDA kernels, written as plain __host__ __device__
// functions so that the host can run them too.
//
// Every CUDA kernel in this folder is "compute the cube's geometry once, then
// loop over items with a grid-stride loop and call one function of this file".
// Nothing here knows about threads, blocks, atomics or ATen: the .cu files own
// the thread mapping, the launch and the reductions. Because the index math
// lives here, csrc/cuda/testing/host_emulation.cc runs exactly these functions
// on the CPU (tests/test_cuda_emulation.py compares them with the float64
// reference), which proves the indexing of kernels that cannot run without a GPU.
//
// The per-voxel math itself (taps, weights, padding) comes from cubecrop_math.h,
// shared with the CPU kernels.
#pragma once

#include <cstdint>

#include "cubecrop_math.h"

namespace cubecrop {
namespace cuda_items {

// A packet of VEC elements that the compiler loads/stores with one instruction.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Packet {
  T val[VEC];
};

// Elements per 16-byte access for a type of `bytes` bytes.
constexpr int vector_width(int bytes) { return bytes >= 16 ? 1 : 16 / bytes; }

// Shape of one crop problem. `stride` are the input's (c, t, h, w) strides in
// elements; the batch stride is applied by the caller (64-bit) so every offset
// computed here stays inside one batch item and fits index_t.
template <typename index_t>
struct CubeShape {
  index_t channels;
  index_t extent[3];  // T, H, W of the input
  index_t size[3];    // Dt, Dh, Dw of the cube
  index_t stride[4];  // input strides (c, t, h, w)
  int64_t padding_mode;
};

// The geometry every voxel of one cube shares: computed once per cube.
template <typename acc_t, typename index_t>
struct CubeGeometry {
  index_t start[3];  // f = floor(c - D/2) per axis (after axis_taps' clamp)
  acc_t frac[3];     // a = (c - D/2) - f
  acc_t slope[3];    // d a / d c: 1, or 0 where axis_taps clamped the start (as torch.clamp's gradient)
};

template <typename acc_t, typename index_t>
CUBECROP_HD CubeGeometry<acc_t, index_t> cube_geometry(const acc_t* center, const CubeShape<index_t>& s) {
  CubeGeometry<acc_t, index_t> g;
CUBECROP_UNROLL
  for (int a = 0; a < 3; ++a) {
    const AxisTaps<acc_t> taps = axis_taps<acc_t>(center[a], s.size[a], s.extent[a]);
    g.start[a] = static_cast<index_t>(taps.start);
    g.frac[a] = taps.frac;
    g.slope[a] = axis_center_grad_scale<acc_t>(center[a], s.size[a], s.extent[a]);
  }
  return g;
}

// Whether the input's strides allow VEC-wide packet loads along W once a row's
// first tap is a multiple of VEC (checked per cube by row_loads_vectorised).
template <typename index_t>
inline bool strides_allow_packets(const void* data, int element_bytes, int vec, int64_t batch_stride,
                                  const CubeShape<index_t>& s) {
  if (vec <= 1 || s.stride[3] != 1) return false;
  if (reinterpret_cast<uintptr_t>(data) % static_cast<uintptr_t>(vec * element_bytes) != 0) return false;
  if (batch_stride % vec != 0) return false;
  for (int d = 0; d < 3; ++d)
    if (s.stride[d] % vec != 0) return false;
  return true;
}

// Per cube: do this cube's rows read VEC-aligned packets that lie inside the input?
// `taps_past_end` is 1 for the trilinear crop (it reads index Dw), 0 for integer crops.
template <int VEC, typename index_t>
CUBECROP_HD bool row_loads_vectorised(bool strides_ok, index_t start_x, index_t size_w, index_t width,
                                      index_t taps_past_end) {
  return VEC > 1 && strides_ok && size_w % VEC == 0 && start_x >= 0 && start_x % VEC == 0 &&
         start_x + size_w - 1 + taps_past_end < width;
}

// ---------------------------------------------------------------------------
// Forward trilinear crop. Item = VEC consecutive output voxels along W of one
// output row (c, dt, dh); rows hold ceil(Dw / VEC) items, the last one masked.
template <int VEC, typename index_t>
CUBECROP_HD index_t forward_items_per_cube(const CubeShape<index_t>& s) {
  return s.channels * s.size[0] * s.size[1] * ((s.size[2] + VEC - 1) / VEC);
}

// Reads the VEC + 1 taps of one input row that VEC consecutive outputs need.
template <int VEC, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void load_row_taps(const scalar_t* row, index_t x, index_t width, index_t stride_w, int64_t padding_mode,
                               bool packets, acc_t v[VEC + 1]) {
  if (VEC > 1 && packets) {
    const Packet<scalar_t, VEC> p = *reinterpret_cast<const Packet<scalar_t, VEC>*>(row + x);
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i) v[i] = static_cast<acc_t>(p.val[i]);
    v[VEC] = static_cast<acc_t>(row[x + VEC]);
    return;
  }
CUBECROP_UNROLL
  for (int i = 0; i <= VEC; ++i) {
    const int64_t xi = resolve_index(static_cast<int64_t>(x) + i, width, padding_mode);
    v[i] = xi < 0 ? static_cast<acc_t>(0) : static_cast<acc_t>(row[static_cast<index_t>(xi) * stride_w]);
  }
}

// video: the batch item's first element; out_cube: the cube's first output element
// (contiguous (C, Dt, Dh, Dw)). `packets`: row_loads_vectorised for this cube.
template <int VEC, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void crop_forward_item(const scalar_t* video, const CubeShape<index_t>& s,
                                   const CubeGeometry<acc_t, index_t>& g, bool packets, index_t item,
                                   scalar_t* out_cube) {
  const index_t chunks = (s.size[2] + VEC - 1) / VEC;
  const index_t wc = item % chunks;
  index_t row = item / chunks;  // (c * Dt + dt) * Dh + dh
  const index_t dh = row % s.size[1];
  const index_t dt = (row / s.size[1]) % s.size[0];
  const index_t c = row / (s.size[1] * s.size[0]);
  const index_t x = g.start[2] + wc * VEC;
  const acc_t one = static_cast<acc_t>(1);
  const acc_t wt[2] = {one - g.frac[0], g.frac[0]};
  const acc_t wy[2] = {one - g.frac[1], g.frac[1]};
  acc_t out[VEC];
CUBECROP_UNROLL
  for (int i = 0; i < VEC; ++i) out[i] = static_cast<acc_t>(0);
CUBECROP_UNROLL
  for (int bt = 0; bt < 2; ++bt) {
    const int64_t ti = resolve_index(static_cast<int64_t>(g.start[0]) + dt + bt, s.extent[0], s.padding_mode);
    if (ti < 0) continue;
CUBECROP_UNROLL
    for (int by = 0; by < 2; ++by) {
      const int64_t yi = resolve_index(static_cast<int64_t>(g.start[1]) + dh + by, s.extent[1], s.padding_mode);
      if (yi < 0) continue;
      const scalar_t* line = video + c * s.stride[0] + static_cast<index_t>(ti) * s.stride[1] +
                             static_cast<index_t>(yi) * s.stride[2];
      acc_t v[VEC + 1];
      load_row_taps<VEC, scalar_t, acc_t, index_t>(line, x, s.extent[2], s.stride[3], s.padding_mode, packets, v);
      const acc_t w = wt[bt] * wy[by];
CUBECROP_UNROLL
      for (int i = 0; i < VEC; ++i) out[i] += w * lerp(v[i], v[i + 1], g.frac[2]);
    }
  }
  const index_t row_start = row * s.size[2];
  const index_t first = wc * VEC;
  if (VEC > 1 && s.size[2] % VEC == 0) {  // rows are whole packets: the output offset is aligned
    Packet<scalar_t, VEC> p;
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i) p.val[i] = static_cast<scalar_t>(out[i]);
    *reinterpret_cast<Packet<scalar_t, VEC>*>(out_cube + row_start + first) = p;
  } else {
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i)
      if (first + i < s.size[2]) out_cube[row_start + first + i] = static_cast<scalar_t>(out[i]);
  }
}

// ---------------------------------------------------------------------------
// Backward, as a gather over the cube's window. Output voxel i of an axis reads
// window voxels i and i + 1, so window voxel j (0 <= j <= D) receives
//   (1 - a) * g[j] + a * g[j - 1]            (video gradient, g[-1] = g[D] = 0)
//   g[j - 1] - g[j]                          (d/da, to be multiplied by V[j])
// per axis, as a tensor product over (t, y, x). Item = one window voxel
// (c, jt, jh, jw) of the (C, Dt+1, Dh+1, Dw+1) window, W fastest.
template <typename index_t>
CUBECROP_HD index_t window_items_per_cube(const CubeShape<index_t>& s) {
  return s.channels * (s.size[0] + 1) * (s.size[1] + 1) * (s.size[2] + 1);
}

template <typename acc_t>
struct WindowGrad {
  acc_t video;      // gradient the window voxel passes to the input voxel it reads
  acc_t centre[3];  // d loss / d a per axis, before multiplying by that input voxel's value
};

// grad_cube: the cube's grad_out, contiguous (C, Dt, Dh, Dw).
template <typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD WindowGrad<acc_t> window_voxel_grad(const scalar_t* grad_cube, const CubeShape<index_t>& s,
                                                const CubeGeometry<acc_t, index_t>& g, index_t c, index_t jt,
                                                index_t jh, index_t jw) {
  const index_t dt = s.size[0], dh = s.size[1], dw = s.size[2];
  const acc_t zero = static_cast<acc_t>(0);
  // Along x for each of the 2 x 2 (t, y) source rows: value and derivative.
  acc_t vx[2][2], dx[2][2];
CUBECROP_UNROLL
  for (int bt = 0; bt < 2; ++bt) {
CUBECROP_UNROLL
    for (int by = 0; by < 2; ++by) {
      const index_t it = jt - bt, ih = jh - by;
      acc_t lo = zero, hi = zero;  // g[jw] (weight 1 - a) and g[jw - 1] (weight a)
      if (it >= 0 && it < dt && ih >= 0 && ih < dh) {
        const scalar_t* line = grad_cube + ((c * dt + it) * dh + ih) * dw;
        if (jw < dw) lo = static_cast<acc_t>(line[jw]);
        if (jw >= 1) hi = static_cast<acc_t>(line[jw - 1]);
      }
      vx[bt][by] = lerp(lo, hi, g.frac[2]);
      dx[bt][by] = hi - lo;
    }
  }
  acc_t vy[2], dyy[2], dxy[2];
CUBECROP_UNROLL
  for (int bt = 0; bt < 2; ++bt) {
    vy[bt] = lerp(vx[bt][0], vx[bt][1], g.frac[1]);
    dyy[bt] = vx[bt][1] - vx[bt][0];
    dxy[bt] = lerp(dx[bt][0], dx[bt][1], g.frac[1]);
  }
  WindowGrad<acc_t> r;
  r.video = lerp(vy[0], vy[1], g.frac[0]);
  r.centre[0] = vy[1] - vy[0];
  r.centre[1] = lerp(dyy[0], dyy[1], g.frac[0]);
  r.centre[2] = lerp(dxy[0], dxy[1], g.frac[0]);
  return r;
}

// The input voxel window voxel (jt, jh, jw) reads, or false when it reads zero padding.
template <typename acc_t, typename index_t>
CUBECROP_HD bool window_voxel_source(const CubeShape<index_t>& s, const CubeGeometry<acc_t, index_t>& g, index_t jt,
                                     index_t jh, index_t jw, index_t where[3]) {
  const index_t j[3] = {jt, jh, jw};
CUBECROP_UNROLL
  for (int a = 0; a < 3; ++a) {
    const int64_t v = resolve_index(static_cast<int64_t>(g.start[a]) + j[a], s.extent[a], s.padding_mode);
    if (v < 0) return false;
    where[a] = static_cast<index_t>(v);
  }
  return true;
}

// One item of the fused backward. Returns false when the window voxel reads
// padding (nothing to do). Otherwise sets *grad_offset (into the batch item of
// a contiguous (C, T, H, W) gradient) and *grad_value, and, when need_centre,
// adds V * d/da to centre[3].
template <typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD bool crop_backward_window_item(const scalar_t* grad_cube, const scalar_t* video,
                                           const CubeShape<index_t>& s, const CubeGeometry<acc_t, index_t>& g,
                                           bool need_centre, index_t item, index_t* grad_offset, acc_t* grad_value,
                                           acc_t centre[3]) {
  const index_t ww = s.size[2] + 1, wh = s.size[1] + 1, wt = s.size[0] + 1;
  const index_t jw = item % ww;
  index_t rest = item / ww;
  const index_t jh = rest % wh;
  rest /= wh;
  const index_t jt = rest % wt;
  const index_t c = rest / wt;
  index_t where[3];
  if (!window_voxel_source(s, g, jt, jh, jw, where)) return false;
  const WindowGrad<acc_t> r = window_voxel_grad(grad_cube, s, g, c, jt, jh, jw);
  *grad_offset = ((c * s.extent[0] + where[0]) * s.extent[1] + where[1]) * s.extent[2] + where[2];
  *grad_value = r.video;
  if (need_centre) {
    const acc_t v = static_cast<acc_t>(
        video[c * s.stride[0] + where[0] * s.stride[1] + where[1] * s.stride[2] + where[2] * s.stride[3]]);
CUBECROP_UNROLL
    for (int a = 0; a < 3; ++a) centre[a] += v * r.centre[a];
  }
  return true;
}

// Deterministic video gradient: window indices j in [*lo, *hi] (inclusive) of
// one axis whose tap resolves to input voxel v (border padding maps a range of
// window voxels onto an edge voxel). Empty when *lo > *hi.
template <typename index_t>
CUBECROP_HD void window_range(index_t v, index_t start, index_t size, index_t extent, int64_t padding_mode,
                              index_t* lo, index_t* hi) {
  const bool border = padding_mode == kBorder;
  index_t l = (border && v == 0) ? 0 : v - start;
  index_t h = (border && v == extent - 1) ? size : v - start;
  *lo = l < 0 ? 0 : l;
  *hi = h > size ? size : h;
}

// Item = one input voxel (c, t, h, w) of one batch item (W fastest). Adds, for
// cubes k0 .. k0 + count - 1 in that order, every window voxel that lands on it.
// grad_cubes: grad_out of the batch item's cube k0, cubes cube_numel apart.
template <typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD acc_t gather_video_grad(const scalar_t* grad_cubes, index_t cube_numel,
                                    const CubeGeometry<acc_t, index_t>* geometry, int count,
                                    const CubeShape<index_t>& s, index_t item, acc_t acc) {
  const index_t vw = item % s.extent[2];
  index_t rest = item / s.extent[2];
  const index_t vh = rest % s.extent[1];
  rest /= s.extent[1];
  const index_t vt = rest % s.extent[0];
  const index_t c = rest / s.extent[0];
  for (int k = 0; k < count; ++k) {
    const CubeGeometry<acc_t, index_t>& g = geometry[k];
    index_t lo[3], hi[3];
    window_range(vt, g.start[0], s.size[0], s.extent[0], s.padding_mode, &lo[0], &hi[0]);
    window_range(vh, g.start[1], s.size[1], s.extent[1], s.padding_mode, &lo[1], &hi[1]);
    window_range(vw, g.start[2], s.size[2], s.extent[2], s.padding_mode, &lo[2], &hi[2]);
    if (lo[0] > hi[0] || lo[1] > hi[1] || lo[2] > hi[2]) continue;
    const scalar_t* grad_cube = grad_cubes + static_cast<index_t>(k) * cube_numel;
    for (index_t jt = lo[0]; jt <= hi[0]; ++jt)
      for (index_t jh = lo[1]; jh <= hi[1]; ++jh)
        for (index_t jw = lo[2]; jw <= hi[2]; ++jw) acc += window_voxel_grad(grad_cube, s, g, c, jt, jh, jw).video;
  }
  return acc;
}

// ---------------------------------------------------------------------------
// Integer test-time crop. Item = VEC consecutive output voxels along W, as in
// the forward crop; starts come from int_cube_start (cubes lie inside).
template <typename index_t>
CUBECROP_HD void int_cube_starts(const double* center, const CubeShape<index_t>& s, index_t start[3]) {
CUBECROP_UNROLL
  for (int a = 0; a < 3; ++a) start[a] = static_cast<index_t>(int_cube_start<double>(center[a], s.size[a], s.extent[a]));
}

// Converts one input element: a plain cast, or (x - mean[c]) / std[c] in acc_t.
template <typename in_t, typename out_t, typename acc_t>
CUBECROP_HD out_t convert_element(in_t x, const float* mean, const float* std, int64_t c) {
  if (mean == nullptr && std == nullptr) return static_cast<out_t>(x);
  acc_t v = static_cast<acc_t>(x);
  if (mean != nullptr) v -= static_cast<acc_t>(mean[c]);
  if (std != nullptr) v /= static_cast<acc_t>(std[c]);
  return static_cast<out_t>(v);
}

template <int VEC, typename in_t, typename out_t, typename acc_t, typename index_t>
CUBECROP_HD void crop_int_item(const in_t* video, const CubeShape<index_t>& s, const index_t start[3], bool packets,
                               const float* mean, const float* std, index_t item, out_t* out_cube) {
  const index_t chunks = (s.size[2] + VEC - 1) / VEC;
  const index_t wc = item % chunks;
  const index_t row = item / chunks;
  const index_t dh = row % s.size[1];
  const index_t dt = (row / s.size[1]) % s.size[0];
  const index_t c = row / (s.size[1] * s.size[0]);
  const index_t first = wc * VEC;
  const in_t* line = video + c * s.stride[0] + (start[0] + dt) * s.stride[1] + (start[1] + dh) * s.stride[2];
  const index_t x = start[2] + first;
  const index_t row_start = row * s.size[2];
  if (VEC > 1 && packets) {  // whole packets in and out (row_loads_vectorised checked Dw % VEC)
    const Packet<in_t, VEC> p = *reinterpret_cast<const Packet<in_t, VEC>*>(line + x);
    Packet<out_t, VEC> q;
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i) q.val[i] = convert_element<in_t, out_t, acc_t>(p.val[i], mean, std, c);
    *reinterpret_cast<Packet<out_t, VEC>*>(out_cube + row_start + first) = q;
    return;
  }
  out_t q[VEC];
CUBECROP_UNROLL
  for (int i = 0; i < VEC; ++i) q[i] = out_t(0);
CUBECROP_UNROLL
  for (int i = 0; i < VEC; ++i)
    if (first + i < s.size[2]) q[i] = convert_element<in_t, out_t, acc_t>(line[(x + i) * s.stride[3]], mean, std, c);
  if (VEC > 1 && s.size[2] % VEC == 0) {
    Packet<out_t, VEC> p;
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i) p.val[i] = q[i];
    *reinterpret_cast<Packet<out_t, VEC>*>(out_cube + row_start + first) = p;
  } else {
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i)
      if (first + i < s.size[2]) out_cube[row_start + first + i] = q[i];
  }
}

}  // namespace cuda_items
}  // namespace cubecrop
