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

// Grid for "one cube per blockIdx.x, its items spread over blockIdx.y".
inline dim3 cube_grid(int64_t cubes, int64_t items_per_cube, int64_t max_chunks = kMaxGridY) {
  TORCH_CHECK(cubes <= std::numeric_limits<int32_t>::max(), "too many cubes (N * K = ", cubes, ") for one launch");
  int64_t chunks = (items_per_cube + kThreads - 1) / kThreads;
  chunks = chunks < 1 ? 1 : (chunks > max_chunks ? max_chunks : chunks);
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
