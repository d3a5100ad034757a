// Per-thread bodies of the CUDA kernels, written as plain __host__ __device__
// functions so that the host can run them too.
//
// Thread mapping, the same for every kernel (docs/kernels.md):
//   a block is kLanes x kRowsY = 32 x 8 threads; blockIdx.z walks the cubes (the
//   batch items for the gather), blockIdx.y the planes (c, t) of a cube or video,
//   blockIdx.x blocks of kRowsY * kRowsPerThread rows of a plane. Thread (tx, ty)
//   takes rows block_row(blockIdx.x, ty, i), i < kRowsPerThread, and along each
//   row the x chunks tx, tx + kLanes, ... So a row index is never decomposed with
//   a division: (c, t) is split once per block plane, everything else is a counter.
// Nothing here knows about atomics, shared memory or ATen: the .cu files own
// the launch and the reductions. csrc/cuda/testing/host_emulation.cc runs these
// functions on the CPU with the kernels' block and thread loops
// (tests/test_cuda_emulation.py compares them with the float64 reference).
//
// The per-voxel math itself (taps, weights, padding) comes from cubecrop_math.h,
// shared with the CPU kernels. Loops marked `sass-loop:` are the ones
// scripts/sass_report.py counts (benchmarks/results/sass_sm90.md).
#pragma once

#include <cstdint>

#include "cubecrop_math.h"

namespace cubecrop {
namespace cuda_items {

constexpr int kLanes = 32;
constexpr int kRowsY = 8;
constexpr int kRowsPerThread = 4;
constexpr int kRowsPerBlock = kRowsY * kRowsPerThread;

// blockIdx.x blocks that cover `rows` rows of a plane.
CUBECROP_HD int64_t row_blocks(int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

// The row thread row `ty` of block `bx` takes at step i.
template <typename index_t>
CUBECROP_HD index_t block_row(index_t bx, int ty, int i) {
  return (bx * kRowsPerThread + i) * kRowsY + ty;
}

// A packet of VEC elements that the compiler loads/stores with one instruction.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Packet {
  T val[VEC];
};

// Elements per 16-byte access for a type of `bytes` bytes.
constexpr int vector_width(int bytes) { return bytes >= 16 ? 1 : 16 / bytes; }

template <typename T>
CUBECROP_HD T min_of(T a, T b) {
  return a < b ? a : b;
}

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
  bool interior;     // every tap (start .. start + D per axis) is inside the input: no padding
};

template <typename acc_t, typename index_t>
CUBECROP_HD CubeGeometry<acc_t, index_t> cube_geometry(const acc_t* center, const CubeShape<index_t>& s) {
  CubeGeometry<acc_t, index_t> g;
  g.interior = true;
CUBECROP_UNROLL
  for (int a = 0; a < 3; ++a) {
    const AxisTaps<acc_t> taps = axis_taps<acc_t>(center[a], s.size[a], s.extent[a]);
    g.start[a] = static_cast<index_t>(taps.start);
    g.frac[a] = taps.frac;
    g.slope[a] = axis_center_grad_scale<acc_t>(center[a], s.size[a], s.extent[a]);
    g.interior = g.interior && taps.start >= 0 && taps.start + s.size[a] < s.extent[a];
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

// Which loop a cube's rows take (the emulation counts them; tests check each is taken).
enum class RowPath : int { kInteriorPackets = 0, kInterior = 1, kGeneral = 2 };

template <typename acc_t, typename index_t>
CUBECROP_HD RowPath row_path(const CubeGeometry<acc_t, index_t>& g, bool packets) {
  return g.interior ? (packets ? RowPath::kInteriorPackets : RowPath::kInterior) : RowPath::kGeneral;
}

// Stores VEC values at out[first ..]: one packet when whole rows are packets, else masked.
template <int VEC, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void store_chunk(const acc_t v[VEC], index_t first, index_t width, scalar_t* out_row) {
  if (VEC > 1 && width % VEC == 0) {  // rows are whole packets: the output offset is aligned
    Packet<scalar_t, VEC> p;
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i) p.val[i] = static_cast<scalar_t>(v[i]);
    *reinterpret_cast<Packet<scalar_t, VEC>*>(out_row + first) = p;
  } else {
CUBECROP_UNROLL
    for (int i = 0; i < VEC; ++i)
      if (first + i < width) out_row[first + i] = static_cast<scalar_t>(v[i]);
  }
}

// ---------------------------------------------------------------------------
// Forward trilinear crop. A thread row is one output row (c, dt, dh) of a cube;
// a chunk is VEC consecutive outputs along it (16-byte stores).

// The 4 (t, y) tap rows of output row (dt, dh) in an interior cube: unchecked offsets.
template <typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void interior_tap_rows(const scalar_t* video, const CubeShape<index_t>& s,
                                   const CubeGeometry<acc_t, index_t>& g, index_t c, index_t dt, index_t dh,
                                   const scalar_t* rows[4]) {
  const scalar_t* r0 = video + c * s.stride[0] + (g.start[0] + dt) * s.stride[1] + (g.start[1] + dh) * s.stride[2] +
                       g.start[2] * s.stride[3];
  rows[0] = r0;
  rows[1] = r0 + s.stride[2];
  rows[2] = r0 + s.stride[1];
  rows[3] = r0 + s.stride[1] + s.stride[2];
}

// out[i] = lerp over x of sum_r w[r] * v[r][i .. i + 1]: rows first, then x (as the CPU kernel).
template <int VEC, typename acc_t>
CUBECROP_HD void blend_chunk(const acc_t v[4][VEC + 1], const acc_t w[4], acc_t ax, acc_t out[VEC]) {
  acc_t u[VEC + 1];
CUBECROP_UNROLL
  for (int j = 0; j <= VEC; ++j) u[j] = w[0] * v[0][j] + w[1] * v[1][j] + w[2] * v[2][j] + w[3] * v[3][j];
CUBECROP_UNROLL
  for (int i = 0; i < VEC; ++i) out[i] = lerp(u[i], u[i + 1], ax);
}

// Interior rows: every tap inside, 32-bit offsets when index_t is, no per-tap resolve.
// PACKETS: the rows are VEC-aligned with unit stride (row_loads_vectorised): one packet
// plus one element per tap row. Otherwise element loads; the last chunk's taps past the
// row's last tap (start + Dw, inside the input) are clamped onto it (the 4 rows share
// the clamped offsets, so the clamp costs VEC + 1 instructions per chunk).
template <int VEC, bool PACKETS, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void forward_interior_row(const scalar_t* const rows[4], index_t stride_w, index_t width,
                                      const acc_t w[4], acc_t ax, int tx, scalar_t* out_row) {
  for (index_t first = static_cast<index_t>(tx) * VEC; first < width; first += kLanes * VEC) {
    acc_t v[4][VEC + 1];
    if constexpr (PACKETS) {
CUBECROP_UNROLL
      for (int r = 0; r < 4; ++r) {
        const Packet<scalar_t, VEC> p = *reinterpret_cast<const Packet<scalar_t, VEC>*>(rows[r] + first);
CUBECROP_UNROLL
        for (int i = 0; i < VEC; ++i) v[r][i] = static_cast<acc_t>(p.val[i]);
        v[r][VEC] = static_cast<acc_t>(rows[r][first + VEC]);
      }
    } else {
      index_t offset[VEC + 1];
CUBECROP_UNROLL
      for (int i = 0; i <= VEC; ++i) offset[i] = min_of<index_t>(first + i, width) * stride_w;
CUBECROP_UNROLL
      for (int r = 0; r < 4; ++r)
CUBECROP_UNROLL
        for (int i = 0; i <= VEC; ++i) v[r][i] = static_cast<acc_t>(rows[r][offset[i]]);
    }
    acc_t out[VEC];
    blend_chunk<VEC, acc_t>(v, w, ax, out);
    store_chunk<VEC, scalar_t, acc_t, index_t>(out, first, width, out_row);
  }
}

// Rows of a cube that reaches past the input: each tap resolved with the padding rule
// (t and y once per row, x per tap).
template <int VEC, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void forward_general_row(const scalar_t* video, const CubeShape<index_t>& s,
                                     const CubeGeometry<acc_t, index_t>& g, const acc_t w[4], index_t c, index_t dt,
                                     index_t dh, int tx, scalar_t* out_row) {
  const scalar_t* rows[4];
  bool valid[4];
CUBECROP_UNROLL
  for (int r = 0; r < 4; ++r) {
    const int64_t ti = resolve_index(static_cast<int64_t>(g.start[0]) + dt + (r >> 1), s.extent[0], s.padding_mode);
    const int64_t yi = resolve_index(static_cast<int64_t>(g.start[1]) + dh + (r & 1), s.extent[1], s.padding_mode);
    valid[r] = ti >= 0 && yi >= 0;
    rows[r] = valid[r] ? video + c * s.stride[0] + static_cast<index_t>(ti) * s.stride[1] +
                             static_cast<index_t>(yi) * s.stride[2]
                       : video;
  }
  const index_t width = s.size[2];
  for (index_t first = static_cast<index_t>(tx) * VEC; first < width; first += kLanes * VEC) {
    acc_t v[4][VEC + 1];
CUBECROP_UNROLL
    for (int i = 0; i <= VEC; ++i) {
      const int64_t xi = resolve_index(static_cast<int64_t>(g.start[2]) + first + i, s.extent[2], s.padding_mode);
CUBECROP_UNROLL
      for (int r = 0; r < 4; ++r)
        v[r][i] = (valid[r] && xi >= 0) ? static_cast<acc_t>(rows[r][static_cast<index_t>(xi) * s.stride[3]])
                                        : static_cast<acc_t>(0);
    }
    acc_t out[VEC];
    blend_chunk<VEC, acc_t>(v, w, g.frac[2], out);
    store_chunk<VEC, scalar_t, acc_t, index_t>(out, first, width, out_row);
  }
}

// Everything thread (tx, ty) of block `bx` does for plane (c, dt) of one cube.
// video: the batch item's first element; out_cube: the cube's contiguous (C, Dt, Dh, Dw) output.
template <int VEC, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD void forward_thread(const scalar_t* video, const CubeShape<index_t>& s,
                                const CubeGeometry<acc_t, index_t>& g, const acc_t w[4], RowPath path, index_t c,
                                index_t dt, index_t bx, int ty, int tx, scalar_t* out_cube) {
  const index_t dh_size = s.size[1], dw = s.size[2];
  scalar_t* out_plane = out_cube + (c * s.size[0] + dt) * dh_size * dw;
  if (path == RowPath::kGeneral) {
    for (int i = 0; i < kRowsPerThread; ++i) {  // sass-loop: forward-general fp32=4
      const index_t dh = block_row(bx, ty, i);
      if (dh >= dh_size) break;
      forward_general_row<VEC, scalar_t, acc_t, index_t>(video, s, g, w, c, dt, dh, tx, out_plane + dh * dw);
    }
    return;
  }
  const scalar_t* rows[4];
  interior_tap_rows<scalar_t, acc_t, index_t>(video, s, g, c, dt, block_row(bx, ty, 0), rows);
  const index_t row_step = kRowsY * s.stride[2];
  if (path == RowPath::kInteriorPackets) {
    for (int i = 0; i < kRowsPerThread; ++i) {  // sass-loop: forward-interior-packets fp32=4
      const index_t dh = block_row(bx, ty, i);
      if (dh >= dh_size) break;
      forward_interior_row<VEC, true, scalar_t, acc_t, index_t>(rows, 1, dw, w, g.frac[2], tx, out_plane + dh * dw);
CUBECROP_UNROLL
      for (int r = 0; r < 4; ++r) rows[r] += row_step;
    }
    return;
  }
  for (int i = 0; i < kRowsPerThread; ++i) {  // sass-loop: forward-interior fp32=4
    const index_t dh = block_row(bx, ty, i);
    if (dh >= dh_size) break;
    forward_interior_row<VEC, false, scalar_t, acc_t, index_t>(rows, s.stride[3], dw, w, g.frac[2], tx,
                                                                out_plane + dh * dw);
CUBECROP_UNROLL
    for (int r = 0; r < 4; ++r) rows[r] += row_step;
  }
}

// ---------------------------------------------------------------------------
// Backward, as a gather over the cube's window. Output voxel i of an axis reads
// window voxels i and i + 1, so window voxel j (0 <= j <= D) receives
// window_gather(g[j], g[j - 1], a) per axis (g[-1] = g[D] = 0), a tensor product
// over (t, y, x). A thread row is one window row (c, jt, jh) of the
// (C, Dt+1, Dh+1, Dw+1) window; along it, one window voxel per lane and step.

template <typename acc_t>
struct CubeWeights {
  acc_t w[4], dwt[4], dwy[4];  // tap_weights and tap_weight_derivatives of the cube
};

template <typename acc_t, typename index_t>
CUBECROP_HD CubeWeights<acc_t> cube_weights(const CubeGeometry<acc_t, index_t>& g) {
  CubeWeights<acc_t> cw;
  tap_weights<acc_t>(g.frac[0], g.frac[1], cw.w);
  tap_weight_derivatives<acc_t>(g.frac[0], g.frac[1], cw.dwt, cw.dwy);
  return cw;
}

// The 4 grad_out rows (it = jt - bt, ih = jh - by, index 2 * bt + by) that feed window
// row (jt, jh) of a cube, or null where that output row does not exist (g = 0 there).
template <typename scalar_t, typename index_t>
CUBECROP_HD void grad_source_rows(const scalar_t* grad_cube, const CubeShape<index_t>& s, index_t c, index_t jt,
                                  index_t jh, const scalar_t* rows[4]) {
  // One offset, then the other three rows are one and two planes / rows before it.
  const index_t row = s.size[2], plane = s.size[1] * s.size[2];
  const scalar_t* here = grad_cube + ((c * s.size[0] + jt) * s.size[1] + jh) * row;
  const bool t_ok[2] = {jt < s.size[0], jt >= 1};
  const bool h_ok[2] = {jh < s.size[1], jh >= 1};
CUBECROP_UNROLL
  for (int r = 0; r < 4; ++r)
    rows[r] = t_ok[r >> 1] && h_ok[r & 1] ? here - (r >> 1) * plane - (r & 1) * row : nullptr;
}

template <typename acc_t>
struct WindowGrad {
  acc_t video;      // gradient the window voxel passes to the input voxel it reads
  acc_t centre[3];  // d loss / d a per axis, before multiplying by that input voxel's value
};

// Window voxel jw of a window row whose grad_out source rows are `rows`.
template <bool NEED_CENTRE, typename scalar_t, typename acc_t, typename index_t>
CUBECROP_HD WindowGrad<acc_t> window_voxel_grad(const scalar_t* const rows[4], index_t jw, index_t dw,
                                                const CubeWeights<acc_t>& cw, acc_t ax) {
  const bool here = jw < dw, prev = jw >= 1;
  WindowGrad<acc_t> r;
  r.video = r.centre[0] = r.centre[1] = r.centre[2] = static_cast<acc_t>(0);
CUBECROP_UNROLL
  for (int k = 0; k < 4; ++k) {
    const bool ok = rows[k] != nullptr;
    const acc_t g_here = ok && here ? static_cast<acc_t>(rows[k][jw]) : static_cast<acc_t>(0);
    const acc_t g_prev = ok && prev ? static_cast<acc_t>(rows[k][jw - 1]) : static_cast<acc_t>(0);
    const acc_t gx = window_gather(g_here, g_prev, ax);
    r.video += cw.w[k] * gx;
    if (NEED_CENTRE) {
      r.centre[0] += cw.dwt[k] * gx;
      r.centre[1] += cw.dwy[k] * gx;
      r.centre[2] += cw.w[k] * window_gather_derivative(g_here, g_prev);
    }
  }
  return r;
}

// What the gather needs of one cube (staged in shared memory per batch item).
template <typename acc_t, typename index_t>
struct CubeTerms {
  CubeGeometry<acc_t, index_t> g;
  CubeWeights<acc_t> cw;
};

template <typename acc_t, typename index_t>
CUBECROP_HD CubeTerms<acc_t, index_t> cube_terms(const acc_t* center, const CubeShape<index_t>& s) {
  CubeTerms<acc_t, index_t> t;
  t.g = cube_geometry(center, s);
  t.cw = cube_weights(t.g);
  return t;
}

// Window voxels per lane and step of the interior window rows: consecutive voxels share
// their grad_out taps along x (XV + 1 loads per source row instead of 2 XV).
constexpr int kWindowVoxelsPerLane = 4;

// The fused backward hands its video gradient to an Emit object (the kernel's atomics, the
// emulation's adds), offsets being into the batch item's contiguous (C, T, H, W) gradient:
//   emit.add(offset, v): adds v to voxel `offset`;
//   emit.add4(offset, v): adds v[q] to voxel offset + q, q < kWindowVoxelsPerLane: voxels of one
//     gradient row whose neighbours offset - 1 and offset + kWindowVoxelsPerLane are voxels of
//     that row too (so a packed two-voxel atomic may pair an end voxel with its neighbour and
//     add zero there).

// The interior window row chunk of voxels jw0 .. jw0 + XV - 1 (those <= Dw): the source
// rows are first combined along t and y at x = jw0 - 1 .. jw0 + XV - 1, as the gradient
// (tap_weights) and its t and y derivatives (tap_weight_derivatives); then each voxel is
// window_gather of two neighbours (window_gather_derivative for x). FULL: every x is
// inside [0, Dw) and every voxel <= Dw (jw0 >= 1, jw0 + XV <= Dw), so no lane masks.
// ALL_ROWS: all 4 source rows exist, so no row test. Every variant does the same float
// operations in the same order for each voxel it handles.
template <bool FULL, bool ALL_ROWS, bool NEED_VIDEO, bool NEED_CENTRE, typename scalar_t, typename acc_t,
          typename index_t, typename Emit>
CUBECROP_HD void window_interior_chunk(const scalar_t* const rows[4], const scalar_t* vrow, index_t stride_w,
                                       index_t grow, index_t jw0, index_t dw, const CubeWeights<acc_t>& cw, acc_t ax,
                                       acc_t centre[3], const Emit& emit) {
  constexpr int XV = kWindowVoxelsPerLane;
  acc_t sum[XV + 1], sum_t[XV + 1], sum_y[XV + 1];
CUBECROP_UNROLL
  for (int q = 0; q <= XV; ++q) sum[q] = sum_t[q] = sum_y[q] = static_cast<acc_t>(0);
CUBECROP_UNROLL
  for (int r = 0; r < 4; ++r) {
    if (!ALL_ROWS && rows[r] == nullptr) continue;  // uniform over the warp (one window row)
    const scalar_t* src = rows[r] + jw0;              // x = jw0 - 1 + q is src[q - 1]
CUBECROP_UNROLL
    for (int q = 0; q <= XV; ++q) {
      const index_t j = jw0 - 1 + q;
      const acc_t gv = (FULL || (j >= 0 && j < dw)) ? static_cast<acc_t>(src[q - 1]) : static_cast<acc_t>(0);
      sum[q] += cw.w[r] * gv;
      if (NEED_CENTRE) {
        sum_t[q] += cw.dwt[r] * gv;
        sum_y[q] += cw.dwy[r] * gv;
      }
    }
  }
  const scalar_t* v0 = vrow + jw0 * stride_w;
  acc_t grad[XV];
CUBECROP_UNROLL
  for (int q = 0; q < XV; ++q) {
    const index_t jw = jw0 + q;
    if (!FULL && jw > dw) break;
    grad[q] = window_gather(sum[q + 1], sum[q], ax);
    if constexpr (NEED_VIDEO && !FULL) emit.add(grow + jw, grad[q]);
    if (NEED_CENTRE) {
      const acc_t v = static_cast<acc_t>(v0[q * stride_w]);
      centre[0] += v * window_gather(sum_t[q + 1], sum_t[q], ax);
      centre[1] += v * window_gather(sum_y[q + 1], sum_y[q], ax);
      centre[2] += v * window_gather_derivative(sum[q + 1], sum[q]);
    }
  }
  if constexpr (NEED_VIDEO && FULL) emit.add4(grow + jw0, grad);
}

// Everything thread (tx, ty) of block `bx` does for window plane (c, jt) of one cube in
// the fused backward: for each window voxel that reads an input voxel, its video gradient
// to `emit` (when NEED_VIDEO; see Emit above), and, when NEED_CENTRE, centre[a] += V * d/da.
// video: the batch item's first element.
template <bool NEED_VIDEO, bool NEED_CENTRE, typename scalar_t, typename acc_t, typename index_t, typename Emit>
CUBECROP_HD void window_thread(const scalar_t* grad_cube, const scalar_t* video, const CubeShape<index_t>& s,
                               const CubeGeometry<acc_t, index_t>& g, const CubeWeights<acc_t>& cw, index_t c,
                               index_t jt, index_t bx, int ty, int tx, acc_t centre[3], const Emit& emit) {
  const index_t wh = s.size[1] + 1, dw = s.size[2];
  const index_t T = s.extent[0], H = s.extent[1], W = s.extent[2];
  if (g.interior) {
    constexpr int XV = kWindowVoxelsPerLane;
    constexpr index_t kStep = kLanes * XV;
    // Once per plane: where window row jh = 0 of plane (c, jt) reads grad_out (its source row
    // (jt, jh), see grad_source_rows) and the video, and where it writes the gradient; window
    // row jh is these plus jh rows. Which of the 4 source rows exist is a t part (per plane)
    // and a y part (per row).
    const index_t dh = s.size[1], plane = s.size[1] * s.size[2];
    const index_t vt = g.start[0] + jt;
    const scalar_t* src_plane = grad_cube + (c * s.size[0] + jt) * plane;
    const scalar_t* video_plane = video + c * s.stride[0] + vt * s.stride[1] + g.start[1] * s.stride[2] +
                                  g.start[2] * s.stride[3];
    const index_t grad_plane = ((c * T + vt) * H + g.start[1]) * W + g.start[2];
    const bool t_ok[2] = {jt < s.size[0], jt >= 1};
    const bool t_both = t_ok[0] && t_ok[1];
    const index_t full_end = dw - XV;  // a chunk at jw0 >= 1 needs no x mask while jw0 <= full_end
    for (int i = 0; i < kRowsPerThread; ++i) {  // sass-loop: backward-window-interior fp32=4
      const index_t jh = block_row(bx, ty, i);
      if (jh >= wh) break;
      const bool h_ok[2] = {jh < dh, jh >= 1};
      const scalar_t* here = src_plane + jh * dw;
      const scalar_t* rows[4];
CUBECROP_UNROLL
      for (int r = 0; r < 4; ++r)
        rows[r] = t_ok[r >> 1] && h_ok[r & 1] ? here - (r >> 1) * plane - (r & 1) * dw : nullptr;
      const scalar_t* vrow = video_plane + jh * s.stride[2];
      const index_t grow = grad_plane + jh * W;
      // Chunks in order along the row: lane 0's first one reads x = -1 (masked), then whole
      // chunks without masks while they last, then the masked rest of the row.
      index_t jw0 = static_cast<index_t>(tx) * XV;
      if (jw0 == 0) {
        window_interior_chunk<false, false, NEED_VIDEO, NEED_CENTRE>(rows, vrow, s.stride[3], grow, jw0, dw, cw,
                                                                     g.frac[2], centre, emit);
        jw0 = kStep;
      }
      if (t_both && h_ok[0] && h_ok[1]) {
        for (; jw0 <= full_end; jw0 += kStep)  // sass-loop: backward-window-chunk fp32=4
          window_interior_chunk<true, true, NEED_VIDEO, NEED_CENTRE>(rows, vrow, s.stride[3], grow, jw0, dw, cw,
                                                                     g.frac[2], centre, emit);
      } else {  // the window's first and last rows in t or y: 1 or 2 source rows
        for (; jw0 <= full_end; jw0 += kStep)  // sass-loop: backward-window-chunk-edge fp32=4
          window_interior_chunk<true, false, NEED_VIDEO, NEED_CENTRE>(rows, vrow, s.stride[3], grow, jw0, dw, cw,
                                                                      g.frac[2], centre, emit);
      }
      for (; jw0 <= dw; jw0 += kStep)
        window_interior_chunk<false, false, NEED_VIDEO, NEED_CENTRE>(rows, vrow, s.stride[3], grow, jw0, dw, cw,
                                                                     g.frac[2], centre, emit);
    }
    return;
  }
  const int64_t vt = resolve_index(static_cast<int64_t>(g.start[0]) + jt, T, s.padding_mode);
  if (vt < 0) return;
  for (int i = 0; i < kRowsPerThread; ++i) {  // sass-loop: backward-window-general fp32=5
    const index_t jh = block_row(bx, ty, i);
    if (jh >= wh) break;
    const int64_t vh = resolve_index(static_cast<int64_t>(g.start[1]) + jh, H, s.padding_mode);
    if (vh < 0) continue;
    const scalar_t* rows[4];
    grad_source_rows<scalar_t, index_t>(grad_cube, s, c, jt, jh, rows);
    const scalar_t* vrow = video + c * s.stride[0] + static_cast<index_t>(vt) * s.stride[1] +
                           static_cast<index_t>(vh) * s.stride[2];
    const index_t grow = ((c * T + static_cast<index_t>(vt)) * H + static_cast<index_t>(vh)) * W;
    for (index_t jw = tx; jw <= dw; jw += kLanes) {
      const int64_t vw = resolve_index(static_cast<int64_t>(g.start[2]) + jw, W, s.padding_mode);
      if (vw < 0) continue;
      const WindowGrad<acc_t> r = window_voxel_grad<NEED_CENTRE, scalar_t, acc_t, index_t>(rows, jw, dw, cw, g.frac[2]);
      if (NEED_VIDEO) emit.add(grow + static_cast<index_t>(vw), r.video);
      if (NEED_CENTRE) {
        const acc_t v = static_cast<acc_t>(vrow[static_cast<index_t>(vw) * s.stride[3]]);
CUBECROP_UNROLL
        for (int a = 0; a < 3; ++a) centre[a] += v * r.centre[a];
      }
    }
  }
}

// Blocks of the fused backward per cube = centre-gradient partials per cube.
CUBECROP_HD int64_t window_blocks_per_cube(int64_t channels, const int64_t size[3]) {
  return channels * (size[0] + 1) * row_blocks(size[1] + 1);
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

// The video gradient of input voxel (c, vt, vh, vw): the window voxels of cubes 0 .. K-1
// that land on it, added in that order. geometry(k) gives cube k's geometry and
// weights (a CubeTerms); grad_cubes is the batch item's grad_out (cubes cube_numel
// apart). ALL_INTERIOR: every cube of the batch item is interior, so at most one
// window voxel of a cube lands on the voxel (no padding folds).
template <bool ALL_INTERIOR, typename scalar_t, typename acc_t, typename index_t, typename GeometryOf>
CUBECROP_HD acc_t gather_voxel(const scalar_t* grad_cubes, index_t cube_numel, index_t cubes,
                               const GeometryOf& geometry, const CubeShape<index_t>& s, index_t c, index_t vt,
                               index_t vh, index_t vw) {
  acc_t acc = static_cast<acc_t>(0);
  const scalar_t* rows[4];
  if constexpr (ALL_INTERIOR) {
    for (index_t k = 0; k < cubes; ++k) {  // sass-loop: backward-gather-interior fp32=1
      const auto& terms = geometry(k);
      const index_t jt = vt - terms.g.start[0], jh = vh - terms.g.start[1], jw = vw - terms.g.start[2];
      if (jt < 0 || jt > s.size[0] || jh < 0 || jh > s.size[1] || jw < 0 || jw > s.size[2]) continue;
      grad_source_rows<scalar_t, index_t>(grad_cubes + k * cube_numel, s, c, jt, jh, rows);
      acc += window_voxel_grad<false, scalar_t, acc_t, index_t>(rows, jw, s.size[2], terms.cw, terms.g.frac[2]).video;
    }
  } else {
    for (index_t k = 0; k < cubes; ++k) {
      const auto& terms = geometry(k);  // a reference into shared memory, or computed
      const CubeGeometry<acc_t, index_t>& g = terms.g;
      const scalar_t* grad_cube = grad_cubes + k * cube_numel;
      index_t lo[3], hi[3];
      window_range(vt, g.start[0], s.size[0], s.extent[0], s.padding_mode, &lo[0], &hi[0]);
      window_range(vh, g.start[1], s.size[1], s.extent[1], s.padding_mode, &lo[1], &hi[1]);
      window_range(vw, g.start[2], s.size[2], s.extent[2], s.padding_mode, &lo[2], &hi[2]);
      for (index_t jt = lo[0]; jt <= hi[0]; ++jt)
        for (index_t jh = lo[1]; jh <= hi[1]; ++jh) {
          grad_source_rows<scalar_t, index_t>(grad_cube, s, c, jt, jh, rows);
          for (index_t jw = lo[2]; jw <= hi[2]; ++jw)
            acc += window_voxel_grad<false, scalar_t, acc_t, index_t>(rows, jw, s.size[2], terms.cw, g.frac[2]).video;
        }
    }
  }
  return acc;
}

// Everything thread (tx, ty) of block `bx` does for plane (c, vt) of one batch item in
// the gather: writes its voxels of the contiguous (C, T, H, W) gradient, cast once.
template <bool ALL_INTERIOR, typename scalar_t, typename grad_t, typename acc_t, typename index_t, typename GeometryOf>
CUBECROP_HD void gather_thread(const scalar_t* grad_cubes, index_t cube_numel, index_t cubes,
                               const GeometryOf& geometry, const CubeShape<index_t>& s, index_t c, index_t vt,
                               index_t bx, int ty, int tx, grad_t* grad_video) {
  const index_t H = s.extent[1], W = s.extent[2];
  grad_t* plane = grad_video + (c * s.extent[0] + vt) * H * W;
  for (int i = 0; i < kRowsPerThread; ++i) {
    const index_t vh = block_row(bx, ty, i);
    if (vh >= H) break;
    if constexpr (ALL_INTERIOR) {
      for (index_t vw = tx; vw < W; vw += kLanes)  // sass-loop: backward-gather-voxel fp32=1
        plane[vh * W + vw] = static_cast<grad_t>(
            gather_voxel<true, scalar_t, acc_t, index_t>(grad_cubes, cube_numel, cubes, geometry, s, c, vt, vh, vw));
    } else {
      for (index_t vw = tx; vw < W; vw += kLanes)
        plane[vh * W + vw] = static_cast<grad_t>(
            gather_voxel<false, scalar_t, acc_t, index_t>(grad_cubes, cube_numel, cubes, geometry, s, c, vt, vh, vw));
    }
  }
}

// ---------------------------------------------------------------------------
// Integer test-time crop: the forward's mapping, starts from int_cube_start
// (cubes lie inside, so every access is unchecked).
template <typename index_t>
CUBECROP_HD void int_cube_starts(const double* center, const CubeShape<index_t>& s, index_t start[3]) {
CUBECROP_UNROLL
  for (int a = 0; a < 3; ++a) start[a] = static_cast<index_t>(int_cube_start<double>(center[a], s.size[a], s.extent[a]));
}

// Converts one input element: a plain cast, or normalise(x, mean[c], std[c]) in acc_t.
template <typename in_t, typename out_t, typename acc_t>
CUBECROP_HD out_t convert_element(in_t x, acc_t mean, acc_t stdev, bool normalised) {
  if (!normalised) return static_cast<out_t>(x);
  return static_cast<out_t>(normalise(static_cast<acc_t>(x), mean, stdev));
}

// Everything thread (tx, ty) of block `bx` does for plane (c, dt) of one cube.
// PACKETS: row_loads_vectorised for this cube (whole packets in and out).
template <int VEC, bool PACKETS, typename in_t, typename out_t, typename acc_t, typename index_t>
CUBECROP_HD void int_thread(const in_t* video, const CubeShape<index_t>& s, const index_t start[3], acc_t mean,
                            acc_t stdev, bool normalised, index_t c, index_t dt, index_t bx, int ty, int tx,
                            out_t* out_cube) {
  const index_t dh_size = s.size[1], dw = s.size[2];
  out_t* out_plane = out_cube + (c * s.size[0] + dt) * dh_size * dw;
  const in_t* plane = video + c * s.stride[0] + (start[0] + dt) * s.stride[1] + start[1] * s.stride[2] +
                      start[2] * s.stride[3];
  for (int i = 0; i < kRowsPerThread; ++i) {  // sass-loop: int-row fp32=4
    const index_t dh = block_row(bx, ty, i);
    if (dh >= dh_size) break;
    const in_t* line = plane + dh * s.stride[2];
    out_t* out_row = out_plane + dh * dw;
    for (index_t first = static_cast<index_t>(tx) * VEC; first < dw; first += kLanes * VEC) {
      if constexpr (PACKETS) {
        const Packet<in_t, VEC> p = *reinterpret_cast<const Packet<in_t, VEC>*>(line + first);
        Packet<out_t, VEC> q;
CUBECROP_UNROLL
        for (int k = 0; k < VEC; ++k) q.val[k] = convert_element<in_t, out_t, acc_t>(p.val[k], mean, stdev, normalised);
        *reinterpret_cast<Packet<out_t, VEC>*>(out_row + first) = q;
      } else {
        out_t q[VEC];
CUBECROP_UNROLL
        for (int k = 0; k < VEC; ++k)
          q[k] = first + k < dw ? convert_element<in_t, out_t, acc_t>(line[(first + k) * s.stride[3]], mean, stdev,
                                                                      normalised)
                                : out_t(0);
        if (VEC > 1 && dw % VEC == 0) {
          Packet<out_t, VEC> p;
CUBECROP_UNROLL
          for (int k = 0; k < VEC; ++k) p.val[k] = q[k];
          *reinterpret_cast<Packet<out_t, VEC>*>(out_row + first) = p;
        } else {
CUBECROP_UNROLL
          for (int k = 0; k < VEC; ++k)
            if (first + k < dw) out_row[first + k] = q[k];
        }
      }
    }
  }
}

}  // namespace cuda_items
}  // namespace cubecrop
