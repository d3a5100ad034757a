// Runs the CUDA kernels' per-thread bodies (csrc/cuda/cube_items.h) on the host,
// with the kernels' own per-cube setup and block/thread loops (blockIdx.z/y/x,
// threadIdx.y/x of the 32 x 8 mapping), so the CPU-only CI can check their index
// math against the float64 reference (tests/test_cuda_emulation.py). Deliberately
// free of torch/CUDA headers: it is built with a plain C++ compiler in about a
// second and called via ctypes.
//
// What is emulated and what is not:
//   - emulated: geometry per cube, the row path (interior + packets, interior,
//     general) and packet decisions from the real data pointers and strides, every
//     thread of every block, the window kernel of the fused backward (atomics
//     become plain adds in the video's dtype: for fp16 / bf16 each add rounds its
//     value and then the sum to that dtype, as the device's packed atomics do), the
//     deterministic gather with its shared-memory staging rule (all-interior loop or
//     not), the centre-gradient slope, the int crop's copy (by element width) and
//     fused-convert kernels; fp16 / bf16 (backward only) in software (Soft16);
//   - not emulated: thread scheduling (the atomics land in the emulation's thread
//     order, one of the orders the device may take), shared memory, the block
//     reduction (a fixed-order tree of the same per-thread contributions), the
//     device's fused multiply-adds (the host build rounds a * b + c twice), fp32
//     atomics' flush of subnormals to zero.
// Each entry point reports which paths ran (path counters), so the tests can
// check that each input takes the path it was written for.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../cube_items.h"

namespace {

using cubecrop::acc_type;
using cubecrop::cuda_items::CubeGeometry;
using cubecrop::cuda_items::CubeShape;
using cubecrop::cuda_items::CubeTerms;
using cubecrop::cuda_items::RowPath;
namespace items = cubecrop::cuda_items;

constexpr int kTile = 32;  // as launch.h

template <typename index_t>
CubeShape<index_t> shape_of(const int64_t* sizes5, const int64_t* strides5, const int64_t* size3, int64_t mode) {
  CubeShape<index_t> s;
  s.channels = static_cast<index_t>(sizes5[1]);
  for (int a = 0; a < 3; ++a) {
    s.extent[a] = static_cast<index_t>(sizes5[a + 2]);
    s.size[a] = static_cast<index_t>(size3[a]);
  }
  for (int d = 0; d < 4; ++d) s.stride[d] = static_cast<index_t>(strides5[d + 1]);
  s.padding_mode = mode;
  return s;
}

// Calls body(bx, ty, tx) for every thread of the blockIdx.x range covering `rows`.
template <typename F>
void for_each_thread(int64_t rows, const F& body) {
  for (int64_t bx = 0; bx < items::row_blocks(rows); ++bx)
    for (int ty = 0; ty < items::kRowsY; ++ty)
      for (int tx = 0; tx < items::kLanes; ++tx) body(bx, ty, tx);
}

// fp16 / bf16 in software (no torch or CUDA headers here): the bits, exact widening, and
// rounding to nearest even from double (subnormals kept, no flush to zero, overflow to
// infinity), as the device's __float2half_rn / __float2bfloat16_rn and its fp16 / bf16
// atomics (atom.add.noftz) round. MANT: stored mantissa bits; EMIN, EMAX: the exponents of
// the smallest and largest normal numbers.
template <int MANT, int EMIN, int EMAX>
struct Soft16 {
  static constexpr int kBias = 1 - EMIN;
  static constexpr int kExpField = 2 * EMAX + 1;  // the all-ones exponent field (inf, NaN)
  uint16_t bits;

  Soft16() = default;
  explicit Soft16(float v) : bits(round(static_cast<double>(v))) {}
  explicit operator float() const { return static_cast<float>(value()); }

  double value() const {
    const int exponent = (bits >> MANT) & kExpField;
    const int mantissa = bits & ((1 << MANT) - 1);
    double v;
    if (exponent == kExpField)
      v = mantissa != 0 ? std::nan("") : HUGE_VAL;
    else if (exponent == 0)
      v = std::ldexp(static_cast<double>(mantissa), EMIN - MANT);
    else
      v = std::ldexp(static_cast<double>(mantissa + (1 << MANT)), exponent - kBias - MANT);
    return (bits >> 15) != 0 ? -v : v;
  }

  // The bits of the nearest value to x, ties to even.
  static uint16_t round(double x) {
    const int sign = std::signbit(x) ? 0x8000 : 0;
    if (std::isnan(x)) return static_cast<uint16_t>(sign | (kExpField << MANT) | (1 << (MANT - 1)));
    const double a = std::fabs(x);
    int e;
    std::frexp(a, &e);  // 2^(e-1) <= a < 2^e: the unit in the last place is 2^(e - 1 - MANT)
    const int ulp = std::max(e - 1 - MANT, EMIN - MANT);
    const double q = std::nearbyint(std::ldexp(a, -ulp));  // a in ulps (exact), rounded half to even
    const double r = std::ldexp(q, ulp);
    if (r == 0) return static_cast<uint16_t>(sign);
    std::frexp(r, &e);
    if (e - 1 > EMAX) return static_cast<uint16_t>(sign | (kExpField << MANT));
    if (e - 1 < EMIN) return static_cast<uint16_t>(sign | static_cast<int>(q));  // subnormal
    const int mantissa = static_cast<int>(std::ldexp(r, MANT - (e - 1))) - (1 << MANT);
    return static_cast<uint16_t>(sign | ((e - 1 + kBias) << MANT) | mantissa);
  }
};
using SoftHalf = Soft16<10, -14, 15>;       // IEEE binary16, as c10::Half
using SoftBFloat16 = Soft16<7, -126, 127>;  // bfloat16, as c10::BFloat16

// One of the window kernel's atomic adds, in the gradient's dtype: fp32 / fp64 add;
// fp16 / bf16 round v to the dtype, then the exact sum (a double holds any sum of two fp16
// or bf16 values that can round differently) to the dtype.
inline float add_in_dtype(float old, float v) { return old + v; }
inline double add_in_dtype(double old, double v) { return old + v; }
template <int MANT, int EMIN, int EMAX>
Soft16<MANT, EMIN, EMAX> add_in_dtype(Soft16<MANT, EMIN, EMAX> old, float v) {
  using S = Soft16<MANT, EMIN, EMAX>;
  S sum;
  sum.bits = S::round(old.value() + S(v).value());
  return sum;
}

// The window kernel's atomics as adds in the gradient's dtype (cube_items.h's Emit), in the
// emulation's thread order. counts[0]: voxels emitted by add4 (the unmasked interior chunks),
// counts[1]: by add (masked chunks, general rows).
template <typename grad_t, typename acc_t, typename index_t>
struct AddGrad {
  grad_t* grad;
  int64_t* counts;
  void add(index_t offset, acc_t v) const {
    grad[offset] = add_in_dtype(grad[offset], v);
    ++counts[1];
  }
  void add4(index_t offset, const acc_t v[items::kWindowVoxelsPerLane]) const {
    for (int q = 0; q < items::kWindowVoxelsPerLane; ++q) grad[offset + q] = add_in_dtype(grad[offset + q], v[q]);
    counts[0] += items::kWindowVoxelsPerLane;
  }
};

// paths[3]: cubes per RowPath.
template <typename scalar_t, typename index_t>
void forward(const scalar_t* video, const int64_t* sizes, const int64_t* strides, const scalar_t* centers, int64_t k,
             const int64_t* size, int64_t mode, scalar_t* out, int64_t* paths) {
  using acc_t = acc_type<scalar_t>;
  constexpr int VEC = items::vector_width(sizeof(scalar_t));
  const auto s = shape_of<index_t>(sizes, strides, size, mode);
  const bool strides_ok = items::strides_allow_packets(video, sizeof(scalar_t), VEC, strides[0], s);
  const int64_t cube_numel = sizes[1] * size[0] * size[1] * size[2];
  for (int64_t cube = 0; cube < sizes[0] * k; ++cube) {  // crop_forward_kernel's blockIdx.z
    const auto g = items::cube_geometry(centers + cube * 3, s);
    acc_t w[4];
    cubecrop::tap_weights<acc_t>(g.frac[0], g.frac[1], w);
    const bool packets = items::row_loads_vectorised<VEC, index_t>(strides_ok, g.start[2], s.size[2], s.extent[2], 1);
    const RowPath path = items::row_path(g, packets);
    ++paths[static_cast<int>(path)];
    for (int64_t plane = 0; plane < sizes[1] * size[0]; ++plane) {  // blockIdx.y
      const index_t c = static_cast<index_t>(plane / size[0]);
      const index_t dt = static_cast<index_t>(plane - c * size[0]);
      for_each_thread(size[1], [&](int64_t bx, int ty, int tx) {
        items::forward_thread<VEC, scalar_t, acc_t, index_t>(video + (cube / k) * strides[0], s, g, w, path, c, dt,
                                                             static_cast<index_t>(bx), ty, tx, out + cube * cube_numel);
      });
    }
  }
}

// grad_video: contiguous (N, C, T, H, W), overwritten. centers and grad_centers: (N, K, 3) in
// acc_type (as the kernels'), grad_centers overwritten. gather: the video gradient from the
// deterministic gather (the window kernel then computes the centre gradient only, as on the
// device), else from the window kernel's atomics into the zero-filled gradient.
// paths[0..1]: window-kernel cubes interior / general; paths[2..3]: gather batch items
// that took the all-interior loop / the general one; paths[4..5]: window voxels whose video
// gradient went out by add4 (unmasked interior chunks) / by add (see AddGrad).
template <typename scalar_t, typename index_t>
void backward(const scalar_t* grad_out, const scalar_t* video, const int64_t* sizes, const int64_t* strides,
              const acc_type<scalar_t>* centers, int64_t k, const int64_t* size, int64_t mode, int gather,
              scalar_t* grad_video, acc_type<scalar_t>* grad_centers, int64_t* paths) {
  using acc_t = acc_type<scalar_t>;
  const auto s = shape_of<index_t>(sizes, strides, size, mode);
  const int64_t n = sizes[0], channels = sizes[1];
  const int64_t cube_numel = channels * size[0] * size[1] * size[2];
  const int64_t voxels = channels * sizes[2] * sizes[3] * sizes[4];
  if (!gather) std::fill(grad_video, grad_video + n * voxels, scalar_t(0.0f));
  for (int64_t cube = 0; cube < n * k; ++cube) {  // crop_backward_window_kernel + centre_grad_finalize_kernel
    const auto g = items::cube_geometry(centers + cube * 3, s);
    const auto cw = items::cube_weights(g);
    ++paths[g.interior ? 0 : 1];
    acc_t centre[3] = {0, 0, 0};
    const AddGrad<scalar_t, acc_t, index_t> emit{grad_video + (cube / k) * voxels, paths + 4};
    for (int64_t plane = 0; plane < channels * (size[0] + 1); ++plane) {
      const index_t c = static_cast<index_t>(plane / (size[0] + 1));
      const index_t jt = static_cast<index_t>(plane - c * (size[0] + 1));
      for_each_thread(size[1] + 1, [&](int64_t bx, int ty, int tx) {
        const scalar_t* grad_cube = grad_out + cube * cube_numel;
        const scalar_t* video_n = video + (cube / k) * strides[0];
        const auto b = static_cast<index_t>(bx);
        if (gather)
          items::window_thread<false, true, scalar_t, acc_t, index_t>(grad_cube, video_n, s, g, cw, c, jt, b, ty, tx,
                                                                      centre, emit);
        else
          items::window_thread<true, true, scalar_t, acc_t, index_t>(grad_cube, video_n, s, g, cw, c, jt, b, ty, tx,
                                                                     centre, emit);
      });
    }
    for (int a = 0; a < 3; ++a) grad_centers[cube * 3 + a] = centre[a] * g.slope[a];
  }
  if (!gather) return;
  std::vector<CubeTerms<acc_t, index_t>> tile(static_cast<size_t>(k < kTile ? k : kTile));
  for (int64_t b = 0; b < n; ++b) {  // crop_backward_gather_kernel's blockIdx.z
    const acc_t* centers_n = centers + b * k * 3;
    const bool staged = k <= kTile;
    bool interior = false;
    if (staged) {
      interior = true;
      for (int64_t i = 0; i < k; ++i) {
        tile[static_cast<size_t>(i)] = items::cube_terms(centers_n + i * 3, s);
        interior = interior && tile[static_cast<size_t>(i)].g.interior;
      }
    }
    ++paths[interior ? 2 : 3];
    const auto terms = [&](index_t i) {
      return staged ? tile[static_cast<size_t>(i)] : items::cube_terms(centers_n + int64_t{i} * 3, s);
    };
    for (int64_t plane = 0; plane < channels * sizes[2]; ++plane) {
      const index_t c = static_cast<index_t>(plane / sizes[2]);
      const index_t vt = static_cast<index_t>(plane - c * sizes[2]);
      for_each_thread(sizes[3], [&](int64_t bx, int ty, int tx) {
        const scalar_t* grad_n = grad_out + b * k * cube_numel;
        scalar_t* out_n = grad_video + b * voxels;
        if (interior)
          items::gather_thread<true, scalar_t, scalar_t, acc_t, index_t>(
              grad_n, static_cast<index_t>(cube_numel), static_cast<index_t>(k), terms, s, c, vt,
              static_cast<index_t>(bx), ty, tx, out_n);
        else
          items::gather_thread<false, scalar_t, scalar_t, acc_t, index_t>(
              grad_n, static_cast<index_t>(cube_numel), static_cast<index_t>(k), terms, s, c, vt,
              static_cast<index_t>(bx), ty, tx, out_n);
      });
    }
  }
}

template <typename in_t, typename out_t, typename index_t>
int64_t crop_int(const in_t* video, const int64_t* sizes, const int64_t* strides, const double* centers, int64_t k,
                 const int64_t* size, const float* mean, const float* std, out_t* out) {
  constexpr int VEC = items::vector_width(sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  using acc_t = acc_type<out_t>;
  const auto s = shape_of<index_t>(sizes, strides, size, cubecrop::kZeros);
  const bool strides_ok = items::strides_allow_packets(video, sizeof(in_t), VEC, strides[0], s);
  const int64_t cube_numel = sizes[1] * size[0] * size[1] * size[2];
  const bool normalised = mean != nullptr || std != nullptr;
  int64_t packet_cubes = 0;
  for (int64_t cube = 0; cube < sizes[0] * k; ++cube) {  // crop_int_kernel's blockIdx.z
    index_t start[3];
    items::int_cube_starts(centers + cube * 3, s, start);
    const bool packets = items::row_loads_vectorised<VEC, index_t>(strides_ok, start[2], s.size[2], s.extent[2], 0);
    packet_cubes += packets;
    for (int64_t plane = 0; plane < sizes[1] * size[0]; ++plane) {
      const index_t c = static_cast<index_t>(plane / size[0]);
      const index_t dt = static_cast<index_t>(plane - c * size[0]);
      const acc_t m = mean != nullptr ? static_cast<acc_t>(mean[c]) : acc_t(0);
      const acc_t sd = std != nullptr ? static_cast<acc_t>(std[c]) : acc_t(1);
      for_each_thread(size[1], [&](int64_t bx, int ty, int tx) {
        const in_t* video_n = video + (cube / k) * strides[0];
        out_t* out_cube = out + cube * cube_numel;
        if (packets)
          items::int_thread<VEC, true, in_t, out_t, acc_t, index_t>(video_n, s, start, m, sd, normalised, c, dt,
                                                                    static_cast<index_t>(bx), ty, tx, out_cube);
        else
          items::int_thread<VEC, false, in_t, out_t, acc_t, index_t>(video_n, s, start, m, sd, normalised, c, dt,
                                                                     static_cast<index_t>(bx), ty, tx, out_cube);
      });
    }
  }
  return packet_cubes;
}

}  // namespace

extern "C" {

// paths[3] (added to): cubes that took the interior + packets, interior and general rows.
#define CUBECROP_EMU_FORWARD(NAME, T)                                                                        \
  void NAME(const T* video, const int64_t* sizes, const int64_t* strides, const T* centers, int64_t k,      \
            const int64_t* size, int64_t mode, int use_int32, T* out, int64_t* paths) {                     \
    if (use_int32)                                                                                          \
      forward<T, int32_t>(video, sizes, strides, centers, k, size, mode, out, paths);                       \
    else                                                                                                    \
      forward<T, int64_t>(video, sizes, strides, centers, k, size, mode, out, paths);                       \
  }
CUBECROP_EMU_FORWARD(emu_crop_forward_f32, float)
CUBECROP_EMU_FORWARD(emu_crop_forward_f64, double)

// paths[6] (added to): window cubes interior / general, gather batch items all-interior / general,
// window voxels emitted by add4 / by add. T: the video's type, C: the centres' (acc_type).
#define CUBECROP_EMU_BACKWARD(NAME, T, C)                                                                       \
  void NAME(const T* grad_out, const T* video, const int64_t* sizes, const int64_t* strides, const C* centers, \
            int64_t k, const int64_t* size, int64_t mode, int gather, int use_int32, T* grad_video,           \
            C* grad_centers, int64_t* paths) {                                                                \
    if (use_int32)                                                                                            \
      backward<T, int32_t>(grad_out, video, sizes, strides, centers, k, size, mode, gather, grad_video,       \
                           grad_centers, paths);                                                              \
    else                                                                                                      \
      backward<T, int64_t>(grad_out, video, sizes, strides, centers, k, size, mode, gather, grad_video,       \
                           grad_centers, paths);                                                              \
  }
CUBECROP_EMU_BACKWARD(emu_crop_backward_f32, float, float)
CUBECROP_EMU_BACKWARD(emu_crop_backward_f64, double, double)
CUBECROP_EMU_BACKWARD(emu_crop_backward_f16, SoftHalf, float)  // torch.float16 storage, float32 centres
CUBECROP_EMU_BACKWARD(emu_crop_backward_bf16, SoftBFloat16, float)

// The fused uint8 -> float32 convert kernel (mean/std may be null); returns the packet cubes.
int64_t emu_crop_int_u8_f32(const uint8_t* video, const int64_t* sizes, const int64_t* strides, const double* centers,
                            int64_t k, const int64_t* size, const float* mean, const float* std, float* out) {
  return crop_int<uint8_t, float, int32_t>(video, sizes, strides, centers, k, size, mean, std, out);
}

// The copy kernel for 1-, 2-, 4- and 8-byte elements; returns the packet cubes.
int64_t emu_crop_int_copy(const void* video, int64_t element_bytes, const int64_t* sizes, const int64_t* strides,
                          const double* centers, int64_t k, const int64_t* size, int use_int32, void* out) {
#define CUBECROP_EMU_COPY(T)                                                                                       \
  return use_int32 ? crop_int<T, T, int32_t>(static_cast<const T*>(video), sizes, strides, centers, k, size,      \
                                             nullptr, nullptr, static_cast<T*>(out))                              \
                   : crop_int<T, T, int64_t>(static_cast<const T*>(video), sizes, strides, centers, k, size,      \
                                             nullptr, nullptr, static_cast<T*>(out));
  switch (element_bytes) {
    case 1: CUBECROP_EMU_COPY(uint8_t)
    case 2: CUBECROP_EMU_COPY(uint16_t)
    case 4: CUBECROP_EMU_COPY(uint32_t)
    case 8: CUBECROP_EMU_COPY(uint64_t)
    default: return -1;
  }
#undef CUBECROP_EMU_COPY
}

}  // extern "C"
