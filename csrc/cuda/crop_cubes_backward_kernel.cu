// CUDA kernels of cubecrop::crop_cubes_backward: video and centre gradients; host side in cuda_ops.cpp.
//
// Thread mapping (cube_items.h): 32 x 8 blocks; blockIdx.x a block of 32 rows,
// blockIdx.y a plane, blockIdx.z a cube (window kernel) or a batch item (gather).
//
// crop_backward_window_kernel (the centre gradient always; the video gradient by
//   atomics unless deterministic algorithms are asked for): plane = window plane (c, jt) of the
//   cube's (C, Dt+1, Dh+1, Dw+1) window, a thread row = a window row (c, jt, jh),
//   one window voxel per lane and step. Each window voxel gathers its <= 8 grad_out
//   sources (window_voxel_grad), so:
//   - video gradient: ONE atomic add per window voxel (not 8 per output voxel);
//     atomics are only needed because different cubes may overlap, or border
//     padding folds several window voxels onto an edge voxel. They add into the
//     zero-filled gradient in the video's dtype (AtomicGrad, kernel_common.cuh):
//     fp16/bf16 as ATen's fastAtomicAdd (packed __half2 / __nv_bfloat162 pairs,
//     an unmasked chunk's 4 voxels as 2 or 3 of them), so no fp32 buffer and no
//     cast kernel, and a voxel's sum rounds to fp16/bf16 after every add, in
//     whatever order the atomics land (as grid_sampler's backward); the gather
//     below rounds once, in a fixed order.
//   - centre gradient: each thread accumulates V[voxel] * d/da in acc_type, the
//     block sums its threads in a fixed order (block_sum3) and writes one partial
//     per (cube, plane, row block); no atomics.
//   Interior cubes (every tap inside) take a loop with unchecked offsets.
// centre_grad_finalize_kernel: one thread per cube sums that cube's partials
//   in order and applies d a / d c (0 where the start was clamped). Both passes
//   have a fixed order, so the centre gradient is bitwise reproducible.
// crop_backward_gather_kernel (the video gradient under
//   torch.use_deterministic_algorithms): plane = input plane
//   (c, t), a thread row = an input row, one voxel per lane and step (coalesced
//   stores in the video's dtype: every voxel written once, no zero fill, no
//   atomics). The batch item's cube terms are staged in shared memory (K <= kTile)
//   or computed as needed; each voxel adds the window voxels of cubes k = 0 .. K-1
//   that land on it, in that order, in acc_type, and rounds once. When every
//   staged cube is interior, a loop without the padding ranges runs.
// Indexing: 64-bit batch/cube base pointers; index_t (int32 or int64, chosen by
// fits_int32) inside one batch item / cube.
#include "kernel_common.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeGeometry;
using cuda_items::CubeShape;
using cuda_items::CubeTerms;
using cuda_items::CubeWeights;

template <typename scalar_t, typename acc_t, typename index_t, bool NEED_VIDEO, bool NEED_CENTRE>
__global__ void __launch_bounds__(kThreads)
    crop_backward_window_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ video,
                                int64_t video_batch_stride, const acc_t* __restrict__ centers, int64_t cubes_per_video,
                                int64_t cubes, CubeShape<index_t> shape, int64_t cube_numel, int64_t grad_batch_numel,
                                scalar_t* __restrict__ grad_video, acc_t* __restrict__ centre_partials) {
  __shared__ acc_t scratch[3 * kWarps];
  const int64_t window_t = int64_t{shape.size[0]} + 1;
  const int64_t planes = int64_t{shape.channels} * window_t;
  for (int64_t cube = blockIdx.z; cube < cubes; cube += gridDim.z) {
    const CubeGeometry<acc_t, index_t> g = cuda_items::cube_geometry(centers + cube * 3, shape);
    const CubeWeights<acc_t> cw = cuda_items::cube_weights(g);
    const int64_t n = cube / cubes_per_video;
    const scalar_t* grad_cube = grad_out + cube * cube_numel;
    const scalar_t* video_n = video + n * video_batch_stride;
    const AtomicGrad<scalar_t, acc_t, index_t> emit{NEED_VIDEO ? grad_video + n * grad_batch_numel : nullptr,
                                                    static_cast<index_t>(grad_batch_numel)};
    for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
      const index_t c = static_cast<index_t>(plane / window_t);
      const index_t jt = static_cast<index_t>(plane - int64_t{c} * window_t);
      acc_t centre[3] = {0, 0, 0};
      cuda_items::window_thread<NEED_VIDEO, NEED_CENTRE, scalar_t, acc_t, index_t>(
          grad_cube, video_n, shape, g, cw, c, jt, static_cast<index_t>(blockIdx.x), threadIdx.y, threadIdx.x, centre,
          emit);
      if (NEED_CENTRE) {
        block_sum3(centre, scratch);  // uniform trip counts: every thread of the block gets here
        if (threadIdx.x == 0 && threadIdx.y == 0) {
          acc_t* slot = centre_partials + ((cube * planes + plane) * gridDim.x + blockIdx.x) * 3;
          slot[0] = centre[0];
          slot[1] = centre[1];
          slot[2] = centre[2];
        }
      }
    }
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
    centre_grad_finalize_kernel(const acc_t* __restrict__ partials, int64_t chunks, const acc_t* __restrict__ centers,
                                CubeShape<int64_t> shape, int64_t cubes, acc_t* __restrict__ grad_centers) {
  const int64_t tid = int64_t{threadIdx.y} * blockDim.x + threadIdx.x;
  for (int64_t cube = int64_t{blockIdx.x} * kThreads + tid; cube < cubes; cube += int64_t{gridDim.x} * kThreads) {
    acc_t sum[3] = {0, 0, 0};
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const acc_t* slot = partials + (cube * chunks + chunk) * 3;
      sum[0] += slot[0];
      sum[1] += slot[1];
      sum[2] += slot[2];
    }
    const CubeGeometry<acc_t, int64_t> g = cuda_items::cube_geometry(centers + cube * 3, shape);
    for (int a = 0; a < 3; ++a) grad_centers[cube * 3 + a] = sum[a] * g.slope[a];
  }
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    crop_backward_gather_kernel(const scalar_t* __restrict__ grad_out, const acc_t* __restrict__ centers,
                                int64_t batch, int64_t cubes_per_video, CubeShape<index_t> shape, int64_t cube_numel,
                                int64_t voxels, scalar_t* __restrict__ grad_video) {
  __shared__ CubeTerms<acc_t, index_t> tile[kTile];
  __shared__ int all_interior;
  const bool staged = cubes_per_video <= kTile;  // uniform: the barriers below are reached by all threads
  const int64_t planes = int64_t{shape.channels} * shape.extent[0];
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  for (int64_t n = blockIdx.z; n < batch; n += gridDim.z) {
    const acc_t* centers_n = centers + n * cubes_per_video * 3;
    bool interior = false;  // every cube of the batch item interior (only known when staged)
    if (staged) {
      __syncthreads();  // the previous batch item's tile is no longer read
      if (tid == 0) all_interior = 1;
      __syncthreads();
      if (tid < cubes_per_video) {
        tile[tid] = cuda_items::cube_terms(centers_n + tid * 3, shape);
        if (!tile[tid].g.interior) atomicAnd(&all_interior, 0);
      }
      __syncthreads();
      interior = all_interior != 0;
    }
    const auto staged_terms = [&](index_t k) -> const CubeTerms<acc_t, index_t>& { return tile[k]; };
    const auto computed_terms = [&](index_t k) { return cuda_items::cube_terms(centers_n + int64_t{k} * 3, shape); };
    const scalar_t* grad_n = grad_out + n * cubes_per_video * cube_numel;
    scalar_t* grad_video_n = grad_video + n * voxels;
    for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
      const index_t c = static_cast<index_t>(plane / shape.extent[0]);
      const index_t vt = static_cast<index_t>(plane - int64_t{c} * shape.extent[0]);
      const index_t bx = static_cast<index_t>(blockIdx.x);
      const index_t numel = static_cast<index_t>(cube_numel), k = static_cast<index_t>(cubes_per_video);
      if (interior) {
        cuda_items::gather_thread<true, scalar_t, scalar_t, acc_t, index_t>(grad_n, numel, k, staged_terms, shape, c,
                                                                             vt, bx, threadIdx.y, threadIdx.x,
                                                                             grad_video_n);
      } else if (staged) {
        cuda_items::gather_thread<false, scalar_t, scalar_t, acc_t, index_t>(grad_n, numel, k, staged_terms, shape, c,
                                                                              vt, bx, threadIdx.y, threadIdx.x,
                                                                              grad_video_n);
      } else {
        cuda_items::gather_thread<false, scalar_t, scalar_t, acc_t, index_t>(grad_n, numel, k, computed_terms, shape,
                                                                              c, vt, bx, threadIdx.y, threadIdx.x,
                                                                              grad_video_n);
      }
    }
  }
}

template <typename scalar_t, typename acc_t, typename index_t, bool NEED_VIDEO, bool NEED_CENTRE>
void launch_window_kernel(const CropProblem& p, const CubeShape<index_t>& shape, const void* grad_out,
                          const void* video, const void* centers, void* grad_video, void* centre_partials,
                          cudaStream_t stream) {
  const int64_t cube_numel = p.channels * p.size[0] * p.size[1] * p.size[2];
  const int64_t voxels = p.channels * p.extent[0] * p.extent[1] * p.extent[2];
  const int64_t cubes = p.batch * p.cubes_per_video;
  const dim3 grid = row_grid(cubes, p.channels * (p.size[0] + 1), p.size[1] + 1);
  crop_backward_window_kernel<scalar_t, acc_t, index_t, NEED_VIDEO, NEED_CENTRE><<<grid, block_dims(), 0, stream>>>(
      static_cast<const scalar_t*>(grad_out), static_cast<const scalar_t*>(video), p.stride[0],
      static_cast<const acc_t*>(centers), p.cubes_per_video, cubes, shape, cube_numel, voxels,
      static_cast<scalar_t*>(grad_video), static_cast<acc_t*>(centre_partials));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_window(const CropProblem& p, const void* grad_out, const void* video, const void* centers,
                   void* grad_video, void* centre_partials, void* grad_centers, cudaStream_t stream) {
  using acc_t = acc_type<scalar_t>;
  const int64_t cubes = p.batch * p.cubes_per_video;
  dispatch_index_type(p.use_int32, [&](auto index_tag) {
    using index_t = decltype(index_tag);
    const auto shape = make_shape<index_t>(p);
    if (grad_video != nullptr && centre_partials != nullptr) {
      launch_window_kernel<scalar_t, acc_t, index_t, true, true>(p, shape, grad_out, video, centers, grad_video,
                                                                  centre_partials, stream);
    } else if (grad_video != nullptr) {
      launch_window_kernel<scalar_t, acc_t, index_t, true, false>(p, shape, grad_out, video, centers,
                                                                   grad_video, nullptr, stream);
    } else if (centre_partials != nullptr) {
      launch_window_kernel<scalar_t, acc_t, index_t, false, true>(p, shape, grad_out, video, centers, nullptr,
                                                                   centre_partials, stream);
    }
  });
  if (centre_partials != nullptr) {
    const int blocks = static_cast<int>(std::min<int64_t>((cubes + kThreads - 1) / kThreads, kMaxGridY));
    centre_grad_finalize_kernel<acc_t><<<blocks, block_dims(), 0, stream>>>(
        static_cast<const acc_t*>(centre_partials), centre_chunks(p), static_cast<const acc_t*>(centers),
        make_shape<int64_t>(p), cubes, static_cast<acc_t*>(grad_centers));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename scalar_t>
void launch_gather(const CropProblem& p, const void* grad_out, const void* centers, void* grad_video,
                   cudaStream_t stream) {
  using acc_t = acc_type<scalar_t>;
  const int64_t cube_numel = p.channels * p.size[0] * p.size[1] * p.size[2];
  const int64_t voxels = p.channels * p.extent[0] * p.extent[1] * p.extent[2];
  dispatch_index_type(p.use_int32, [&](auto index_tag) {
    using index_t = decltype(index_tag);
    const dim3 grid = row_grid(p.batch, p.channels * p.extent[0], p.extent[1]);
    crop_backward_gather_kernel<scalar_t, acc_t, index_t><<<grid, block_dims(), 0, stream>>>(
        static_cast<const scalar_t*>(grad_out), static_cast<const acc_t*>(centers), p.batch, p.cubes_per_video,
        make_shape<index_t>(p), cube_numel, voxels, static_cast<scalar_t*>(grad_video));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

void launch_crop_backward_window(DType scalar, const CropProblem& p, const void* grad_out, const void* video,
                                 const void* centers, void* grad_video, void* centre_partials,
                                 void* grad_centers, cudaStream_t stream) {
  switch (scalar) {
    case DType::kHalf:
      return launch_window<c10::Half>(p, grad_out, video, centers, grad_video, centre_partials, grad_centers,
                                      stream);
    case DType::kBFloat16:
      return launch_window<c10::BFloat16>(p, grad_out, video, centers, grad_video, centre_partials,
                                          grad_centers, stream);
    case DType::kFloat:
      return launch_window<float>(p, grad_out, video, centers, grad_video, centre_partials, grad_centers,
                                  stream);
    case DType::kDouble:
      return launch_window<double>(p, grad_out, video, centers, grad_video, centre_partials, grad_centers,
                                   stream);
    default: TORCH_CHECK(false, "crop_cubes_backward (CUDA): unsupported video dtype");
  }
}

void launch_crop_backward_gather(DType scalar, const CropProblem& p, const void* grad_out, const void* centers,
                                 void* grad_video, cudaStream_t stream) {
  switch (scalar) {
    case DType::kHalf: return launch_gather<c10::Half>(p, grad_out, centers, grad_video, stream);
    case DType::kBFloat16: return launch_gather<c10::BFloat16>(p, grad_out, centers, grad_video, stream);
    case DType::kFloat: return launch_gather<float>(p, grad_out, centers, grad_video, stream);
    case DType::kDouble: return launch_gather<double>(p, grad_out, centers, grad_video, stream);
    default: TORCH_CHECK(false, "crop_cubes_backward (CUDA): unsupported video dtype");
  }
}

}  // namespace cuda
}  // namespace cubecrop
