// Device-side plumbing shared by the kernels: the shape in the kernels' index
// type, the grid shape, and the deterministic block reduction. Light headers
// only (see launch.h for why).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

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

// The window kernel's video gradient (the Emit of cube_items.h): atomicAdd into the
// accumulator (float for fp16 / bf16 / fp32, double for fp64).
template <typename grad_t, typename acc_t, typename index_t>
struct AtomicGrad {
  grad_t* grad;  // the batch item's contiguous (C, T, H, W) accumulator

  __device__ __forceinline__ void add(index_t offset, acc_t v) const { atomicAdd(grad + offset, v); }

  __device__ __forceinline__ void add4(index_t offset, const acc_t v[4]) const {
    static_assert(cuda_items::kWindowVoxelsPerLane == 4, "add4 adds 4 voxels");
    grad_t* p = grad + offset;
#pragma unroll
    for (int q = 0; q < 4; ++q) atomicAdd(p + q, v[q]);
  }
};

}  // namespace cuda
}  // namespace cubecrop
