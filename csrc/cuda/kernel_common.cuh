// Device-side plumbing shared by the kernels: the shape in the kernels' index
// type, the grid shape, and the deterministic block reduction. Light headers
// only (see launch.h for why).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "cube_items.h"
#include "launch.h"

namespace cubecrop {
namespace cuda {

template <typename index_t>
cuda_items::CubeShape<index_t> make_shape(const CropProblem& p) {
  cuda_items::CubeShape<index_t> s;
  s.channels = static_cast<index_t>(p.channels);
  for (int a = 0; a < 3; ++a) {
    s.extent[a] = static_cast<index_t>(p.extent[a]);
    s.size[a] = static_cast<index_t>(p.size[a]);
  }
  for (int d = 0; d < 4; ++d) s.stride[d] = static_cast<index_t>(p.stride[d + 1]);
  s.padding_mode = p.padding_mode;
  return s;
}

template <typename F>
void dispatch_index_type(bool use_int32, F&& body) {
  if (use_int32) {
    body(int32_t{});
  } else {
    body(int64_t{});
  }
}

// Every kernel runs kLanes x kRowsY threads (cube_items.h's mapping).
inline dim3 block_dims() { return dim3(cuda_items::kLanes, cuda_items::kRowsY, 1); }

// Grid of that mapping: blockIdx.x = row blocks of a plane, blockIdx.y = planes,
// blockIdx.z = cubes (or batch items); y and z are grid-stride loops past 65535.
inline dim3 row_grid(int64_t outer, int64_t planes, int64_t rows) {
  const int64_t x = cuda_items::row_blocks(rows);
  TORCH_CHECK(x <= std::numeric_limits<int32_t>::max(), "too many rows (", rows, ") for one launch");
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(planes, 1), kMaxGridY)),
              static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(outer, 1), kMaxGridY)));
}

// Deterministic sum of three values over the block: warp shuffles in a fixed
// pattern, then one slot per warp in shared memory summed by warp 0 in order.
// Every thread of the block must call it; thread 0 gets the result. Ends with a
// barrier so the scratch can be reused by the next call.
template <typename acc_t>
__device__ __forceinline__ void block_sum3(acc_t v[3], acc_t* scratch /* [3 * kWarps] */) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int lane = tid % 32, warp = tid / 32;
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
  __syncthreads();
}

// The fp16 / bf16 element and two-element types of CUDA's atomics, and their float
// conversions (round to nearest even).
template <typename T>
struct HalfPair;
template <>
struct HalfPair<c10::Half> {
  using scalar = __half;
  using pair = __half2;
  static __device__ __forceinline__ pair make(float lo, float hi) { return __floats2half2_rn(lo, hi); }
  static __device__ __forceinline__ scalar one(float v) { return __float2half_rn(v); }
};
template <>
struct HalfPair<c10::BFloat16> {
  using scalar = __nv_bfloat16;
  using pair = __nv_bfloat162;
  static __device__ __forceinline__ pair make(float lo, float hi) { return __floats2bfloat162_rn(lo, hi); }
  static __device__ __forceinline__ scalar one(float v) { return __float2bfloat16_rn(v); }
};

// The window kernel's video gradient (the Emit of cube_items.h): atomic adds straight into
// the gradient in the video's dtype. float / double: atomicAdd. fp16 / bf16 as ATen's
// fastAtomicAdd (ATen/native/cuda/KernelUtils.cuh, used by grid_sampler's backward): a packed
// two-element atomic (__half2 / __nv_bfloat162 on a 4-byte-aligned pair) with zero in the
// other half when that neighbour lies in the batch item, else a scalar atomic. add4's four
// voxels go as two pairs when the first is 4-byte aligned, else as (0, v0), (v1, v2), (v3, 0)
// (its neighbours are voxels of the same row). Every element add rounds to the dtype (round
// to nearest even, no flush to zero), so fp16 / bf16 gradients carry one rounding per add.
template <typename grad_t, typename acc_t, typename index_t>
struct AtomicGrad {
  static constexpr bool kHalf = std::is_same_v<grad_t, c10::Half> || std::is_same_v<grad_t, c10::BFloat16>;
  grad_t* grad;   // the batch item's contiguous (C, T, H, W) gradient
  index_t numel;  // its voxels

  static __device__ __forceinline__ bool aligned_pair(const grad_t* p) {
    return reinterpret_cast<uintptr_t>(p) % (2 * sizeof(grad_t)) == 0;
  }
  static __device__ __forceinline__ void pair_add(grad_t* p, acc_t lo, acc_t hi) {
    using P = HalfPair<grad_t>;
    atomicAdd(reinterpret_cast<typename P::pair*>(p), P::make(lo, hi));
  }

  __device__ __forceinline__ void add(index_t offset, acc_t v) const {
    grad_t* p = grad + offset;
    if constexpr (kHalf) {
      // The 4-byte pair holding p: (p, p + 1) when p is aligned, else (p - 1, p).
      const bool low = aligned_pair(p);
      if (low ? offset < numel - 1 : offset > 0) {
        pair_add(low ? p : p - 1, low ? v : acc_t(0), low ? acc_t(0) : v);
      } else {
        atomicAdd(reinterpret_cast<typename HalfPair<grad_t>::scalar*>(p), HalfPair<grad_t>::one(v));
      }
    } else {
      atomicAdd(p, v);
    }
  }

  __device__ __forceinline__ void add4(index_t offset, const acc_t v[4]) const {
    static_assert(cuda_items::kWindowVoxelsPerLane == 4, "add4 packs 4 voxels");
    grad_t* p = grad + offset;
    if constexpr (kHalf) {
      if (aligned_pair(p)) {
        pair_add(p, v[0], v[1]);
        pair_add(p + 2, v[2], v[3]);
      } else {
        pair_add(p - 1, acc_t(0), v[0]);
        pair_add(p + 1, v[1], v[2]);
        pair_add(p + 3, v[3], acc_t(0));
      }
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q) atomicAdd(p + q, v[q]);
    }
  }
};

}  // namespace cuda
}  // namespace cubecrop
