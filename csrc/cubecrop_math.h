// The per-voxel math of every cubecrop kernel, CPU and CUDA alike.
//
// Contract (docs/kernels.md), per axis (t, y, x) in tensor order (T, H, W):
//   voxel i spans [i, i+1); a cube of size D centred at c covers [c - D/2, c + D/2);
//   its output voxel i reads position s_i = c - D/2 + i, i.e. with
//   f = floor(c - D/2) and a = (c - D/2) - f:
//       out[i] = (1 - a) * V[f + i] + a * V[f + i + 1]
//   and d out[i] / d c = V[f + i + 1] - V[f + i].
// Every voxel of a cube shares (f, a), so the weights are computed once per cube.
//
// This header holds no ATen types: plain scalars only, so the same functions
// compile for the host (CPU kernels) and the device (CUDA kernels).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define CUBECROP_HD __host__ __device__ __forceinline__
#else
#define CUBECROP_HD inline
#endif

// Loop unrolling hint that every compiler understands (host GCC warns on a bare `#pragma unroll`).
// Only nvcc's device pass (__CUDA_ARCH__) gets the hint: its host pass hands `#pragma unroll`
// to GCC (-Wunknown-pragmas) and rejects `#pragma GCC unroll` itself (warning #1675-D).
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define CUBECROP_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__) || defined(__HIPCC__)
#define CUBECROP_UNROLL
#elif defined(__clang__)
#define CUBECROP_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define CUBECROP_UNROLL _Pragma("GCC unroll 8")
#else
#define CUBECROP_UNROLL
#endif

namespace cubecrop {

// The accumulation type of every kernel: fp16/bf16/fp32 accumulate in float, fp64 in double.
template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Matches the integer the Python layer passes for padding_mode.
enum PaddingMode : int64_t { kZeros = 0, kBorder = 1 };

// One axis of one cube: output voxel i blends input indices (start + i) and
// (start + i + 1) with weights (1 - frac) and frac.
template <typename acc_t>
struct AxisTaps {
  int64_t start;
  acc_t frac;
};

template <typename acc_t>
CUBECROP_HD acc_t clamp_value(acc_t v, acc_t lo, acc_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Where a cube of `size` centred at `center` starts along an axis of `extent`.
// The start is clamped to [-(size + 2), extent + 1] before the integer cast so
// absurd centres cannot overflow int64; every tap is outside the input in that
// range, so the clamp changes neither the value (zeros, or the clamped border
// voxel) nor the gradient (zero). Non-finite centres are rejected upstream.
template <typename acc_t>
CUBECROP_HD AxisTaps<acc_t> axis_taps(acc_t center, int64_t size, int64_t extent) {
  acc_t s = center - static_cast<acc_t>(size) * static_cast<acc_t>(0.5);
  s = clamp_value<acc_t>(s, -static_cast<acc_t>(size + 2), static_cast<acc_t>(extent + 1));
  acc_t f = floor(s);
  // A cube ending exactly at the upper edge (integer start extent - size >= 1)
  // takes the cell below with frac 1: the same values, and the centre gradient
  // is the difference from inside the input, not into the padding (docs/ops.md).
  // (s == extent - size, an integer, implies f == s.)
  if (extent > size && s == static_cast<acc_t>(extent - size)) f -= static_cast<acc_t>(1);
  AxisTaps<acc_t> taps;
  taps.start = static_cast<int64_t>(f);
  taps.frac = s - f;
  return taps;
}

// 1 where the centre gradient flows along this axis, 0 where axis_taps clamped
// the start (the reference's clamp has zero gradient there; every tap then
// misses the input, or in border mode reads one edge voxel, so the true
// derivative is 0 too; this makes it exactly 0 rather than a rounding residue).
template <typename acc_t>
CUBECROP_HD acc_t axis_center_grad_scale(acc_t center, int64_t size, int64_t extent) {
  const acc_t s = center - static_cast<acc_t>(size) * static_cast<acc_t>(0.5);
  const bool clamped = s < -static_cast<acc_t>(size + 2) || s > static_cast<acc_t>(extent + 1);
  return clamped ? static_cast<acc_t>(0) : static_cast<acc_t>(1);
}

// The input index a tap at `index` reads, or -1 when it reads zero padding.
CUBECROP_HD int64_t resolve_index(int64_t index, int64_t extent, int64_t padding_mode) {
  if (index >= 0 && index < extent) return index;
  if (padding_mode == kBorder) return index < 0 ? 0 : extent - 1;
  return -1;
}

// Test-time integer crop: start = round(c - D/2) (half rounds up), clamped so
// the cube lies inside [0, extent). Requires size <= extent (checked upstream).
template <typename acc_t>
CUBECROP_HD int64_t int_cube_start(acc_t center, int64_t size, int64_t extent) {
  acc_t s = center - static_cast<acc_t>(size) * static_cast<acc_t>(0.5);
  s = clamp_value<acc_t>(s, static_cast<acc_t>(0), static_cast<acc_t>(extent - size));
  return static_cast<int64_t>(floor(s + static_cast<acc_t>(0.5)));
}

// Linear blend of two taps along one axis: (1 - frac) * lo + frac * hi. This form
// (a multiply and an FMA, the cost of lo + frac * (hi - lo)) is exact at frac 0 and 1,
// so a cube at an integer start, the upper-edge one included, is an exact slice.
template <typename acc_t>
CUBECROP_HD acc_t lerp(acc_t lo, acc_t hi, acc_t frac) {
  return (static_cast<acc_t>(1) - frac) * lo + frac * hi;
}

// The weights of the 4 (t, y) tap rows of a cube, index 2 * bt + by (bt, by = 0: the
// lower tap, 1: the upper one). Every output row of the cube blends the same 4 rows
// with these, then blends along x with lerp(.., .., frac_x). Computed once per cube.
template <typename acc_t>
CUBECROP_HD void tap_weights(acc_t at, acc_t ay, acc_t w[4]) {
  const acc_t one = static_cast<acc_t>(1);
  w[0] = (one - at) * (one - ay);
  w[1] = (one - at) * ay;
  w[2] = at * (one - ay);
  w[3] = at * ay;
}

// Derivative twins of tap_weights: d w[r] / d at and d w[r] / d ay. The centre gradient
// along t (y) is the sum over voxels of grad * V[tap] * dwt[r] (dwy[r]).
template <typename acc_t>
CUBECROP_HD void tap_weight_derivatives(acc_t at, acc_t ay, acc_t dwt[4], acc_t dwy[4]) {
  const acc_t one = static_cast<acc_t>(1);
  dwt[0] = -(one - ay);
  dwt[1] = -ay;
  dwt[2] = one - ay;
  dwt[3] = ay;
  dwy[0] = -(one - at);
  dwy[1] = one - at;
  dwy[2] = -at;
  dwy[3] = at;
}

// The backward along one axis, as a gather over the cube's window: window voxel j
// (0 <= j <= D) is read by output voxels j (weight 1 - a) and j - 1 (weight a), so it
// receives (1 - a) * g[j] + a * g[j - 1], with g[-1] = g[D] = 0 (pass 0 for those),
// and d/da of that is g[j - 1] - g[j].
template <typename acc_t>
CUBECROP_HD acc_t window_gather(acc_t g_here, acc_t g_prev, acc_t frac) {
  return lerp(g_here, g_prev, frac);
}

template <typename acc_t>
CUBECROP_HD acc_t window_gather_derivative(acc_t g_here, acc_t g_prev) {
  return g_prev - g_here;
}

// The fused normalisation of crop_cubes_int: (x - mean) / std with true division in
// acc_t: float32, or float64 when the output is float64 (op contract in csrc/ops.cpp).
template <typename acc_t>
CUBECROP_HD acc_t normalise(acc_t x, acc_t mean, acc_t stdev) {
  return (x - mean) / stdev;
}

}  // namespace cubecrop
