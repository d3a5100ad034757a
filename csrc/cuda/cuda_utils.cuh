// Launch plumbing shared by the CUDA kernels: argument checks, the 32/64-bit
// index choice, the grid shape, and the deterministic block reduction.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>

#include "cube_items.h"

namespace cubecrop {
namespace cuda {

// Every kernel runs 256 threads per block (8 warps): enough loads in flight per
// block, and the block reduction below is written for it.
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// gridDim.y is limited to 65535; items past it are covered by the grid-stride loops.
constexpr int64_t kMaxGridY = 65535;

inline void check_cuda_tensor(const at::Tensor& t, const char* name, const at::Tensor& reference) {
  TORCH_CHECK(t.defined(), name, " must be a tensor");
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor for the cuda backend, got one on ", t.device());
  TORCH_CHECK(t.device() == reference.device(), name, " is on ", t.device(), " but the video is on ",
              reference.device(), ": put both on one device");
}

inline std::array<int64_t, 3> check_size(at::IntArrayRef size) {
  TORCH_CHECK(size.size() == 3, "size must hold 3 values (Dt, Dh, Dw), got ", size.size());
  TORCH_CHECK(size[0] >= 1 && size[1] >= 1 && size[2] >= 1, "size must be positive, got ", size);
  return {size[0], size[1], size[2]};
}

inline void check_centers(const at::Tensor& centers, const at::Tensor& video, at::ScalarType dtype) {
  check_cuda_tensor(centers, "centers", video);
  TORCH_CHECK(centers.dim() == 3 && centers.size(0) == video.size(0) && centers.size(2) == 3,
              "centers must have shape (N=", video.size(0), ", K, 3), got ", centers.sizes());
  TORCH_CHECK(centers.scalar_type() == dtype, "centers must be ", dtype, " here, got ", centers.scalar_type());
}

// The largest element offset inside one batch item (dims 1..4), plus one.
inline int64_t batch_item_span(const at::Tensor& t) {
  int64_t span = 1;
  for (int64_t d = 1; d < t.dim(); ++d) span += (t.size(d) - 1) * t.stride(d);
  return span;
}

// 32-bit indexing is used when every per-batch-item / per-cube quantity is at
// most 2^30: offsets then never come near overflow, even with the few voxels
// of padding and the packet width that index arithmetic adds. Batch and cube
// base pointers are always formed in 64 bits, so a tensor with more than 2^31
// elements in total still runs the 32-bit kernels when each item is small.
inline bool fits_int32(std::initializer_list<int64_t> quantities) {
  for (int64_t q : quantities)
    if (q > (int64_t{1} << 30)) return false;
  return true;
}

template <typename F>
void dispatch_index_type(bool use_int32, F&& body) {
  if (use_int32) {
    body(int32_t{});
  } else {
    body(int64_t{});
  }
}

// Shape of a (N, C, T, H, W) view (any strides) cropped with `size`.
template <typename index_t>
cuda_items::CubeShape<index_t> make_shape(const at::Tensor& video, const std::array<int64_t, 3>& size,
                                          int64_t padding_mode) {
  cuda_items::CubeShape<index_t> s;
  s.channels = static_cast<index_t>(video.size(1));
  for (int a = 0; a < 3; ++a) {
    s.extent[a] = static_cast<index_t>(video.size(a + 2));
    s.size[a] = static_cast<index_t>(size[a]);
  }
  for (int d = 0; d < 4; ++d) s.stride[d] = static_cast<index_t>(video.stride(d + 1));
  s.padding_mode = padding_mode;
  return s;
}

// Grid for "one cube per blockIdx.x, its items spread over blockIdx.y".
inline dim3 cube_grid(int64_t cubes, int64_t items_per_cube, int64_t max_chunks = kMaxGridY) {
  TORCH_CHECK(cubes <= std::numeric_limits<int32_t>::max(), "too many cubes (N * K = ", cubes, ") for one launch");
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>((items_per_cube + kThreads - 1) / kThreads, max_chunks));
  return dim3(static_cast<unsigned>(cubes), static_cast<unsigned>(chunks), 1);
}

// Deterministic sum of three values over the block: warp shuffles in a fixed
// pattern, then one slot per warp in shared memory summed by warp 0 in order.
// Every thread of the block must call it; thread 0 gets the result.
template <typename acc_t>
__device__ __forceinline__ void block_sum3(acc_t v[3], acc_t* scratch /* [3 * kWarps] */) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v[a] += __shfl_down_sync(0xffffffffu, v[a], offset);
  }
  if (lane == 0) {
#pragma unroll
    for (int a = 0; a < 3; ++a) scratch[warp * 3 + a] = v[a];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      v[a] = lane < kWarps ? scratch[lane * 3 + a] : static_cast<acc_t>(0);
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v[a] += __shfl_down_sync(0xffffffffu, v[a], offset);
    }
  }
}

}  // namespace cuda
}  // namespace cubecrop
