// CUDA forward of cubecrop::crop_cubes (trilinear cube crop).
//
// Thread mapping (review note):
//   blockIdx.x = cube n * K + k. Thread 0 computes the cube's geometry (taps,
//   fractions: cube_geometry) and whether its rows can be read as aligned
//   packets, once, into shared memory.
//   blockIdx.y and threadIdx.x cover the cube's items in a grid-stride loop:
//   item = VEC consecutive output voxels along W of one output row (c, dt, dh),
//   VEC = 16 bytes / sizeof(scalar) (4 fp32, 8 fp16/bf16, 2 fp64), so
//   consecutive threads write consecutive 16-byte packets of the contiguous
//   output and read consecutive input addresses along W (coalesced).
//   Each item reads VEC + 1 taps from each of the 4 (t, y) tap rows: one packet
//   plus one element when the cube's x start is packet-aligned and inside the
//   input (row_loads_vectorised), else element by element with padding.
//   Rows whose width is not a multiple of VEC use masked element stores.
//   Accumulation is in opmath (fp32 for fp16/bf16).
// Indexing: 64-bit batch/cube base pointers; index_t (int32 or int64, chosen by
// fits_int32) for every offset inside one batch item / cube.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "cuda_utils.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeGeometry;
using cuda_items::CubeShape;

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    crop_forward_kernel(const scalar_t* __restrict__ video, int64_t batch_stride, const acc_t* __restrict__ centers,
                        int64_t cubes_per_video, CubeShape<index_t> shape, bool strides_ok, int64_t cube_numel,
                        scalar_t* __restrict__ out) {
  constexpr int VEC = cuda_items::vector_width(sizeof(scalar_t));
  __shared__ CubeGeometry<acc_t, index_t> geometry;
  __shared__ bool packets;
  const int64_t cube = blockIdx.x;
  if (threadIdx.x == 0) {
    geometry = cuda_items::cube_geometry(centers + cube * 3, shape);
    packets = cuda_items::row_loads_vectorised<VEC, index_t>(strides_ok, geometry.start[2], shape.size[2],
                                                             shape.extent[2], 1);
  }
  __syncthreads();
  const scalar_t* video_n = video + (cube / cubes_per_video) * batch_stride;
  scalar_t* out_cube = out + cube * cube_numel;
  const int64_t items = cuda_items::forward_items_per_cube<VEC>(shape);
  for (int64_t item = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; item < items;
       item += int64_t{gridDim.y} * blockDim.x) {
    cuda_items::crop_forward_item<VEC, scalar_t, acc_t, index_t>(video_n, shape, geometry, packets,
                                                                 static_cast<index_t>(item), out_cube);
  }
}

at::Tensor crop_cubes_cuda(const at::Tensor& video, const at::Tensor& centers_in, at::IntArrayRef size_in,
                           int64_t padding_mode) {
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

  const c10::cuda::CUDAGuard guard(video.device());
  const at::Tensor centers = centers_in.contiguous();
  const int64_t n = video.size(0), k = centers.size(1), c = video.size(1);
  at::Tensor out = at::empty({n, k, c, size[0], size[1], size[2]}, video.options());
  if (out.numel() == 0) return out;
  if (video.numel() == 0) return out.zero_();  // zeros padding everywhere

  const int64_t cube_numel = c * size[0] * size[1] * size[2];
  const bool use_int32 = fits_int32({batch_item_span(video), cube_numel});
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "cubecrop_crop_cubes_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int VEC = cuda_items::vector_width(sizeof(scalar_t));
    dispatch_index_type(use_int32, [&](auto index_tag) {
      using index_t = decltype(index_tag);
      const auto shape = make_shape<index_t>(video, size, padding_mode);
      const bool strides_ok = cuda_items::strides_allow_packets(video.const_data_ptr(), sizeof(scalar_t), VEC,
                                                                video.stride(0), shape);
      const dim3 grid = cube_grid(n * k, cuda_items::forward_items_per_cube<VEC>(shape));
      crop_forward_kernel<scalar_t, acc_t, index_t><<<grid, kThreads, 0, stream>>>(
          video.const_data_ptr<scalar_t>(), video.stride(0), centers.const_data_ptr<acc_t>(), k, shape, strides_ok,
          cube_numel, out.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace cubecrop

TORCH_LIBRARY_IMPL(cubecrop, CUDA, m) { m.impl("crop_cubes", &cubecrop::cuda::crop_cubes_cuda); }
