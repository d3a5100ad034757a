// CUDA backward of cubecrop::crop_cubes: video and centre gradients.
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
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <tuple>

#include "cuda_utils.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeGeometry;
using cuda_items::CubeShape;

// At most this many centre partials per cube (blockIdx.y chunks of a window).
constexpr int64_t kMaxCentreChunks = 1024;
// Cube geometries staged in shared memory at a time by the gather kernel.
constexpr int kTile = 32;

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
  for (int64_t item = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; item < items;
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

std::tuple<at::Tensor, at::Tensor> crop_cubes_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& video,
                                                            const at::Tensor& centers_in, at::IntArrayRef size_in,
                                                            int64_t padding_mode, bool need_video_grad,
                                                            bool need_centers_grad) {
  TORCH_CHECK(video.defined() && video.is_cuda(), "video must be a CUDA tensor for the cuda backend");
  TORCH_CHECK(video.dim() == 5, "video must be a 5-D tensor (N, C, T, H, W), got shape ", video.sizes());
  const auto dtype = video.scalar_type();
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat || dtype == at::kDouble,
              "video must be float16, bfloat16, float32 or float64, got ", dtype);
  const auto acc_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  check_centers(centers_in, video, acc_dtype);
  const auto size = check_size(size_in);
  TORCH_CHECK(padding_mode == kZeros || padding_mode == kBorder, "padding_mode must be 0 (zeros) or 1 (border), got ",
              padding_mode);
  TORCH_CHECK(padding_mode == kZeros || (video.size(2) > 0 && video.size(3) > 0 && video.size(4) > 0),
              "border padding needs a video with T, H, W >= 1, got ", video.sizes());
  check_cuda_tensor(grad_out_in, "grad_out", video);
  const int64_t n = video.size(0), k = centers_in.size(1), c = video.size(1);
  const std::vector<int64_t> out_shape{n, k, c, size[0], size[1], size[2]};
  TORCH_CHECK(grad_out_in.sizes() == at::IntArrayRef(out_shape), "grad_out must have shape ", out_shape, ", got ",
              grad_out_in.sizes());
  TORCH_CHECK(grad_out_in.scalar_type() == dtype, "grad_out must have the video's dtype ", dtype, ", got ",
              grad_out_in.scalar_type());

  const c10::cuda::CUDAGuard guard(video.device());
  const at::Tensor centers = centers_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  at::Tensor grad_video = need_video_grad ? at::empty(video.sizes(), video.options()) : at::empty({0}, video.options());
  at::Tensor grad_centers = need_centers_grad ? at::zeros({n, k, 3}, centers.options()) : at::empty({0}, centers.options());
  if (!need_video_grad && !need_centers_grad) return {grad_video, grad_centers};
  if (grad_out.numel() == 0 || video.numel() == 0) {
    grad_video.zero_();  // no cube reads any voxel; centre gradients stay 0
    return {grad_video, grad_centers};
  }

  const int64_t cube_numel = c * size[0] * size[1] * size[2];
  const int64_t window_numel = c * (size[0] + 1) * (size[1] + 1) * (size[2] + 1);
  const int64_t voxels = c * video.size(2) * video.size(3) * video.size(4);
  const bool use_int32 = fits_int32({batch_item_span(video), window_numel, voxels, k * cube_numel});
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  const auto stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "cubecrop_crop_cubes_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // fp16/bf16 gradients are accumulated by atomics into an fp32 buffer.
    using grad_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    dispatch_index_type(use_int32, [&](auto index_tag) {
      using index_t = decltype(index_tag);
      const auto shape = make_shape<index_t>(video, size, padding_mode);
      const bool atomic_video = need_video_grad && !deterministic;
      at::Tensor accumulator;  // where the atomics add
      if (atomic_video) {
        accumulator = std::is_same_v<grad_t, scalar_t>
                          ? grad_video.zero_()
                          : at::zeros(video.sizes(), video.options().dtype(c10::CppTypeToScalarType<grad_t>::value));
      }
      if (atomic_video || need_centers_grad) {
        const dim3 grid = cube_grid(n * k, cuda_items::window_items_per_cube(shape), kMaxCentreChunks);
        at::Tensor partials;
        if (need_centers_grad) partials = at::empty({n * k, static_cast<int64_t>(grid.y), 3}, centers.options());
        crop_backward_window_kernel<scalar_t, acc_t, grad_t, index_t><<<grid, kThreads, 0, stream>>>(
            grad_out.const_data_ptr<scalar_t>(), video.const_data_ptr<scalar_t>(), video.stride(0),
            centers.const_data_ptr<acc_t>(), k, shape, cube_numel, voxels,
            atomic_video ? accumulator.mutable_data_ptr<grad_t>() : nullptr,
            need_centers_grad ? partials.mutable_data_ptr<acc_t>() : nullptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (need_centers_grad) {
          const int64_t cubes = n * k;
          const int blocks = static_cast<int>(std::min<int64_t>((cubes + kThreads - 1) / kThreads, 65535));
          centre_grad_finalize_kernel<acc_t><<<blocks, kThreads, 0, stream>>>(
              partials.const_data_ptr<acc_t>(), grid.y, centers.const_data_ptr<acc_t>(),
              make_shape<int64_t>(video, size, padding_mode), cubes, grad_centers.mutable_data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        if (atomic_video && !std::is_same_v<grad_t, scalar_t>) grad_video.copy_(accumulator);
      }
      if (need_video_grad && deterministic) {
        const int64_t blocks_x = std::min<int64_t>((voxels + kThreads - 1) / kThreads, int64_t{1} << 20);
        const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(std::min<int64_t>(n, kMaxGridY)), 1);
        crop_backward_gather_kernel<scalar_t, acc_t, index_t><<<grid, kThreads, 0, stream>>>(
            grad_out.const_data_ptr<scalar_t>(), centers.const_data_ptr<acc_t>(), n, k, shape, cube_numel, voxels,
            grad_video.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  return {grad_video, grad_centers};
}

}  // namespace
}  // namespace cuda
}  // namespace cubecrop

TORCH_LIBRARY_IMPL(cubecrop, CUDA, m) { m.impl("crop_cubes_backward", &cubecrop::cuda::crop_cubes_backward_cuda); }
