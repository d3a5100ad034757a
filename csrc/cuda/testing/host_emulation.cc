// Runs the CUDA kernels' item functions (csrc/cuda/cube_items.h) on the host,
// with the same per-cube setup and item decomposition as the kernels, so the
// CPU-only CI can check their index math against the float64 reference
// (tests/test_cuda_emulation.py). Deliberately free of torch/CUDA headers: it
// is built with a plain C++ compiler in about a second and called via ctypes.
//
// What is emulated and what is not:
//   - emulated: geometry per cube, packet (vectorised) decisions from the real
//     data pointers and strides, every item of every cube, the window gather
//     of the atomic path (atomics become plain adds), the deterministic
//     per-voxel gather with its kTile tiling, the centre-gradient slope, the
//     int crop's copy (by element width) and fused-convert kernels;
//   - not emulated: thread scheduling, shared memory, the block reduction
//     (a fixed-order tree of the same per-item contributions).
#include <cstdint>
#include <cstring>
#include <vector>

#include "../cube_items.h"

namespace {

using cubecrop::cuda_items::CubeGeometry;
using cubecrop::cuda_items::CubeShape;
namespace items = cubecrop::cuda_items;

constexpr int kTile = 32;  // as crop_backward_gather_kernel

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

template <typename scalar_t, typename index_t>
int64_t forward(const scalar_t* video, const int64_t* sizes, const int64_t* strides, const scalar_t* centers,
                int64_t k, const int64_t* size, int64_t mode, scalar_t* out) {
  constexpr int VEC = items::vector_width(sizeof(scalar_t));
  const auto s = shape_of<index_t>(sizes, strides, size, mode);
  const bool strides_ok = items::strides_allow_packets(video, sizeof(scalar_t), VEC, strides[0], s);
  const int64_t cube_numel = sizes[1] * size[0] * size[1] * size[2];
  int64_t packet_cubes = 0;
  for (int64_t cube = 0; cube < sizes[0] * k; ++cube) {
    const auto g = items::cube_geometry(centers + cube * 3, s);
    const bool packets = items::row_loads_vectorised<VEC, index_t>(strides_ok, g.start[2], s.size[2], s.extent[2], 1);
    packet_cubes += packets;
    const int64_t count = items::forward_items_per_cube<VEC>(s);
    for (int64_t item = 0; item < count; ++item)
      items::crop_forward_item<VEC, scalar_t, scalar_t, index_t>(video + (cube / k) * strides[0], s, g, packets,
                                                                 static_cast<index_t>(item), out + cube * cube_numel);
  }
  return packet_cubes;
}

// grad_video: contiguous (N, C, T, H, W), overwritten. grad_centers: (N, K, 3), overwritten.
template <typename scalar_t, typename index_t>
void backward(const scalar_t* grad_out, const scalar_t* video, const int64_t* sizes, const int64_t* strides,
              const scalar_t* centers, int64_t k, const int64_t* size, int64_t mode, int deterministic,
              scalar_t* grad_video, scalar_t* grad_centers) {
  using acc_t = scalar_t;
  const auto s = shape_of<index_t>(sizes, strides, size, mode);
  const int64_t n = sizes[0];
  const int64_t cube_numel = sizes[1] * size[0] * size[1] * size[2];
  const int64_t voxels = sizes[1] * sizes[2] * sizes[3] * sizes[4];
  std::vector<acc_t> accumulator(static_cast<size_t>(n * voxels), acc_t(0));
  for (int64_t cube = 0; cube < n * k; ++cube) {  // crop_backward_window_kernel + centre_grad_finalize_kernel
    const auto g = items::cube_geometry(centers + cube * 3, s);
    acc_t centre[3] = {0, 0, 0};
    const int64_t count = items::window_items_per_cube(s);
    for (int64_t item = 0; item < count; ++item) {
      index_t offset;
      acc_t value;
      if (items::crop_backward_window_item<scalar_t, acc_t, index_t>(grad_out + cube * cube_numel,
                                                                     video + (cube / k) * strides[0], s, g, true,
                                                                     static_cast<index_t>(item), &offset, &value,
                                                                     centre))
        accumulator[static_cast<size_t>((cube / k) * voxels + offset)] += value;
    }
    for (int a = 0; a < 3; ++a) grad_centers[cube * 3 + a] = centre[a] * g.slope[a];
  }
  if (!deterministic) {
    for (int64_t i = 0; i < n * voxels; ++i) grad_video[i] = static_cast<scalar_t>(accumulator[static_cast<size_t>(i)]);
    return;
  }
  CubeGeometry<acc_t, index_t> tile[kTile];  // crop_backward_gather_kernel
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t item = 0; item < voxels; ++item) {
      acc_t acc = 0;
      for (int64_t k0 = 0; k0 < k; k0 += kTile) {
        const int count = static_cast<int>(k - k0 < kTile ? k - k0 : kTile);
        for (int i = 0; i < count; ++i) tile[i] = items::cube_geometry(centers + (b * k + k0 + i) * 3, s);
        acc = items::gather_video_grad<scalar_t, acc_t, index_t>(grad_out + (b * k + k0) * cube_numel,
                                                                 static_cast<index_t>(cube_numel), tile, count, s,
                                                                 static_cast<index_t>(item), acc);
      }
      grad_video[b * voxels + item] = static_cast<scalar_t>(acc);
    }
  }
}

template <typename in_t, typename out_t, typename index_t>
int64_t crop_int(const in_t* video, const int64_t* sizes, const int64_t* strides, const double* centers, int64_t k,
                 const int64_t* size, const float* mean, const float* std, out_t* out) {
  constexpr int VEC = items::vector_width(sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  using acc_t = float;
  const auto s = shape_of<index_t>(sizes, strides, size, cubecrop::kZeros);
  const bool strides_ok = items::strides_allow_packets(video, sizeof(in_t), VEC, strides[0], s);
  const int64_t cube_numel = sizes[1] * size[0] * size[1] * size[2];
  int64_t packet_cubes = 0;
  for (int64_t cube = 0; cube < sizes[0] * k; ++cube) {
    index_t start[3];
    items::int_cube_starts(centers + cube * 3, s, start);
    const bool packets = items::row_loads_vectorised<VEC, index_t>(strides_ok, start[2], s.size[2], s.extent[2], 0);
    packet_cubes += packets;
    const int64_t count = items::forward_items_per_cube<VEC>(s);
    for (int64_t item = 0; item < count; ++item)
      items::crop_int_item<VEC, in_t, out_t, acc_t, index_t>(video + (cube / k) * strides[0], s, start, packets, mean,
                                                             std, static_cast<index_t>(item), out + cube * cube_numel);
  }
  return packet_cubes;
}

}  // namespace

extern "C" {

// Each returns the number of cubes whose rows took the packet (vectorised) path.
#define CUBECROP_EMU_FORWARD(NAME, T)                                                                        \
  int64_t NAME(const T* video, const int64_t* sizes, const int64_t* strides, const T* centers, int64_t k,   \
               const int64_t* size, int64_t mode, int use_int32, T* out) {                                  \
    return use_int32 ? forward<T, int32_t>(video, sizes, strides, centers, k, size, mode, out)              \
                     : forward<T, int64_t>(video, sizes, strides, centers, k, size, mode, out);             \
  }
CUBECROP_EMU_FORWARD(emu_crop_forward_f32, float)
CUBECROP_EMU_FORWARD(emu_crop_forward_f64, double)

#define CUBECROP_EMU_BACKWARD(NAME, T)                                                                           \
  void NAME(const T* grad_out, const T* video, const int64_t* sizes, const int64_t* strides, const T* centers, \
            int64_t k, const int64_t* size, int64_t mode, int deterministic, int use_int32, T* grad_video,     \
            T* grad_centers) {                                                                                 \
    if (use_int32)                                                                                             \
      backward<T, int32_t>(grad_out, video, sizes, strides, centers, k, size, mode, deterministic, grad_video, \
                           grad_centers);                                                                      \
    else                                                                                                       \
      backward<T, int64_t>(grad_out, video, sizes, strides, centers, k, size, mode, deterministic, grad_video, \
                           grad_centers);                                                                      \
  }
CUBECROP_EMU_BACKWARD(emu_crop_backward_f32, float)
CUBECROP_EMU_BACKWARD(emu_crop_backward_f64, double)

// The fused uint8 -> float32 convert kernel (mean/std may be null).
int64_t emu_crop_int_u8_f32(const uint8_t* video, const int64_t* sizes, const int64_t* strides, const double* centers,
                            int64_t k, const int64_t* size, const float* mean, const float* std, float* out) {
  return crop_int<uint8_t, float, int32_t>(video, sizes, strides, centers, k, size, mean, std, out);
}

// The copy kernel for 1-, 2-, 4- and 8-byte elements.
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
