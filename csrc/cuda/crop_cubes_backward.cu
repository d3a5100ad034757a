// CUDA backward of cubecrop::crop_cubes: video and centre gradients; host side in cuda_ops.cpp.
//
// Thread mapping (review note):
//
// crop_backward_window_kernel (default path; the centre gradient always):
//   blockIdx.x = cube n * K + k; thread 0 computes the cube's geometry once
//   into shared memory. blockIdx.y and threadIdx.x cover the cube's
//   (C, Dt+1, Dh+1, Dw+1) window in a grid-stride loop, W fastest. Each window
//   voxel gathers its <= 8 grad_out sources (crop_backward_window_item), so:
//   - video gradient: ONE atomicAdd per window voxel (not 8 per output voxel);
//     atomics are only needed because different cubes may overlap, or border
//     padding folds several window voxels onto an edge voxel. fp16/bf16 add
//     into an fp32 buffer that is cast once at the end.
//   - centre gradient: each thread accumulates V[voxel] * d/da in opmath
//     (fp32, fp64 for fp64), the block sums its threads in a fixed order
//     (block_sum3) and writes one partial per (cube, blockIdx.y); no atomics.
// centre_grad_finalize_kernel: one thread per cube sums that cube's partials
//   in blockIdx.y order and applies d a / d c (0 where the start was clamped).
//   Both passes have a fixed order, so the centre gradient is bitwise
//   reproducible run to run.
// crop_backward_gather_kernel (video gradient when
//   at::globalContext().deterministicAlgorithms()): blockIdx.y = batch item n,
//   blockIdx.x / threadIdx.x = input voxel (c, t, h, w), W fastest (coalesced
//   stores, every voxel written once: no zero fill, no atomics). Cube
//   geometries are staged in shared memory in tiles of kTile; each voxel adds
//   the window voxels of cubes k = 0 .. K-1 that land on it, in that order.
// Indexing: 64-bit batch/cube base pointers; index_t (int32 or int64, chosen by
// fits_int32) inside one batch item / cube.
#include "kernel_common.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeGeometry;
using cuda_items::CubeShape;

template <typename scalar_t, typename acc_t, typename grad_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    crop_backward_window_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ video,
                                int64_t video_batch_stride, const acc_t* __restrict__ centers, int64_t cubes_per_video,
                                CubeShape<index_t> shape, int64_t cube_numel, int64_t grad_batch_numel,
                                grad_t* __restrict__ grad_video, acc_t* __restrict__ centre_partials) {
  __shared__ CubeGeometry<acc_t, index_t> geometry;
  __shared__ acc_t scratch[3 * kWarps];
  const int64_t cube = blockIdx.x;
  if (threadIdx.x == 0) geometry = cuda_items::cube_geometry(centers + cube * 3, shape);
  __syncthreads();
  const int64_t n = cube / cubes_per_video;
  const scalar_t* grad_cube = grad_out + cube * cube_numel;
  const scalar_t* video_n = video + n * video_batch_stride;
  grad_t* grad_n = grad_video == nullptr ? nullptr : grad_video + n * grad_batch_numel;
  const bool need_centre = centre_partials != nullptr;  // uniform over the grid
  acc_t centre[3] = {0, 0, 0};
  const int64_t items = cuda_items::window_items_per_cube(shape);
  for (int64_t item = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; item < items;  // sass-loop: backward-window fp32=1
       item += int64_t{gridDim.y} * blockDim.x) {
    index_t offset;
    acc_t value;
    const bool inside = cuda_items::crop_backward_window_item<scalar_t, acc_t, index_t>(
        grad_cube, video_n, shape, geometry, need_centre, static_cast<index_t>(item), &offset, &value, centre);
    if (inside && grad_n != nullptr) atomicAdd(grad_n + offset, static_cast<grad_t>(value));
  }
  if (need_centre) {
    block_sum3(centre, scratch);
    if (threadIdx.x == 0) {
      acc_t* slot = centre_partials + (cube * gridDim.y + blockIdx.y) * 3;
      slot[0] = centre[0];
      slot[1] = centre[1];
      slot[2] = centre[2];
    }
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
    centre_grad_finalize_kernel(const acc_t* __restrict__ partials, int64_t chunks, const acc_t* __restrict__ centers,
                                CubeShape<int64_t> shape, int64_t cubes, acc_t* __restrict__ grad_centers) {
  for (int64_t cube = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; cube < cubes;
       cube += int64_t{gridDim.x} * blockDim.x) {
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
  __shared__ CubeGeometry<acc_t, index_t> tile[kTile];
  for (int64_t n = blockIdx.y; n < batch; n += gridDim.y) {
    const scalar_t* grad_n = grad_out + n * cubes_per_video * cube_numel;
    scalar_t* grad_video_n = grad_video + n * voxels;
    // Uniform trip counts (base, k0) so every thread reaches the barriers.
    for (int64_t base = int64_t{blockIdx.x} * blockDim.x; base < voxels; base += int64_t{gridDim.x} * blockDim.x) {
      const int64_t item = base + threadIdx.x;
      const bool active = item < voxels;
      acc_t acc = 0;
      for (int64_t k0 = 0; k0 < cubes_per_video; k0 += kTile) {
        const int count = static_cast<int>(cubes_per_video - k0 < kTile ? cubes_per_video - k0 : kTile);
        __syncthreads();  // the previous tile is no longer read
        if (static_cast<int>(threadIdx.x) < count)
          tile[threadIdx.x] = cuda_items::cube_geometry(centers + (n * cubes_per_video + k0 + threadIdx.x) * 3, shape);
        __syncthreads();
        if (active)
          acc = cuda_items::gather_video_grad<scalar_t, acc_t, index_t>(grad_n + k0 * cube_numel,
                                                                        static_cast<index_t>(cube_numel), tile, count,
                                                                        shape, static_cast<index_t>(item), acc);
      }
      if (active) grad_video_n[item] = static_cast<scalar_t>(acc);
    }
  }
}

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

template <typename scalar_t>
void launch_window(const CropProblem& p, const void* grad_out, const void* video, const void* centers,
                   void* grad_video_accum, void* centre_partials, void* grad_centers, cudaStream_t stream) {
  using acc_t = acc_type<scalar_t>;
  using grad_t = acc_t;  // fp16/bf16 gradients are accumulated by atomics into an fp32 buffer
  const int64_t cube_numel = p.channels * p.size[0] * p.size[1] * p.size[2];
  const int64_t voxels = p.channels * p.extent[0] * p.extent[1] * p.extent[2];
  const int64_t cubes = p.batch * p.cubes_per_video;
  const int64_t chunks = centre_chunks(p);
  dispatch_index_type(p.use_int32, [&](auto index_tag) {
    using index_t = decltype(index_tag);
    const auto shape = make_shape<index_t>(p);
    const dim3 grid = cube_grid(cubes, cuda_items::window_items_per_cube(shape), kMaxCentreChunks);
    TORCH_CHECK(static_cast<int64_t>(grid.y) == chunks, "crop_cubes_backward (CUDA): centre chunk count mismatch");
    crop_backward_window_kernel<scalar_t, acc_t, grad_t, index_t><<<grid, kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(grad_out), static_cast<const scalar_t*>(video), p.stride[0],
        static_cast<const acc_t*>(centers), p.cubes_per_video, shape, cube_numel, voxels,
        static_cast<grad_t*>(grad_video_accum), static_cast<acc_t*>(centre_partials));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (centre_partials != nullptr) {
    const int blocks = static_cast<int>(std::min<int64_t>((cubes + kThreads - 1) / kThreads, kMaxGridY));
    centre_grad_finalize_kernel<acc_t><<<blocks, kThreads, 0, stream>>>(
        static_cast<const acc_t*>(centre_partials), chunks, static_cast<const acc_t*>(centers),
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
    const int64_t blocks_x = std::min<int64_t>((voxels + kThreads - 1) / kThreads, int64_t{1} << 20);
    const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(std::min<int64_t>(p.batch, kMaxGridY)), 1);
    crop_backward_gather_kernel<scalar_t, acc_t, index_t><<<grid, kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(grad_out), static_cast<const acc_t*>(centers), p.batch, p.cubes_per_video,
        make_shape<index_t>(p), cube_numel, voxels, static_cast<scalar_t*>(grad_video));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

void launch_crop_backward_window(DType scalar, const CropProblem& p, const void* grad_out, const void* video,
                                 const void* centers, void* grad_video_accum, void* centre_partials,
                                 void* grad_centers, cudaStream_t stream) {
  switch (scalar) {
    case DType::kHalf:
      return launch_window<c10::Half>(p, grad_out, video, centers, grad_video_accum, centre_partials, grad_centers,
                                      stream);
    case DType::kBFloat16:
      return launch_window<c10::BFloat16>(p, grad_out, video, centers, grad_video_accum, centre_partials,
                                          grad_centers, stream);
    case DType::kFloat:
      return launch_window<float>(p, grad_out, video, centers, grad_video_accum, centre_partials, grad_centers,
                                  stream);
    case DType::kDouble:
      return launch_window<double>(p, grad_out, video, centers, grad_video_accum, centre_partials, grad_centers,
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
