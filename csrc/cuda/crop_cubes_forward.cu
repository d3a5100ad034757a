// CUDA forward of cubecrop::crop_cubes (trilinear cube crop); host side in cuda_ops.cpp.
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
#include "kernel_common.cuh"

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
  for (int64_t item = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; item < items;  // sass-loop: forward fp32=4
       item += int64_t{gridDim.y} * blockDim.x) {
    cuda_items::crop_forward_item<VEC, scalar_t, acc_t, index_t>(video_n, shape, geometry, packets,
                                                                 static_cast<index_t>(item), out_cube);
  }
}

template <typename scalar_t>
void launch_typed(const CropProblem& p, const void* video, const void* centers, void* out, cudaStream_t stream) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  constexpr int VEC = cuda_items::vector_width(sizeof(scalar_t));
  const int64_t cube_numel = p.channels * p.size[0] * p.size[1] * p.size[2];
  dispatch_index_type(p.use_int32, [&](auto index_tag) {
    using index_t = decltype(index_tag);
    const auto shape = make_shape<index_t>(p);
    const bool strides_ok = cuda_items::strides_allow_packets(video, sizeof(scalar_t), VEC, p.stride[0], shape);
    const dim3 grid = cube_grid(p.batch * p.cubes_per_video, cuda_items::forward_items_per_cube<VEC>(shape));
    crop_forward_kernel<scalar_t, acc_t, index_t><<<grid, kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(video), p.stride[0], static_cast<const acc_t*>(centers), p.cubes_per_video,
        shape, strides_ok, cube_numel, static_cast<scalar_t*>(out));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

void launch_crop_forward(DType scalar, const CropProblem& p, const void* video, const void* centers, void* out,
                         cudaStream_t stream) {
  switch (scalar) {
    case DType::kHalf: return launch_typed<c10::Half>(p, video, centers, out, stream);
    case DType::kBFloat16: return launch_typed<c10::BFloat16>(p, video, centers, out, stream);
    case DType::kFloat: return launch_typed<float>(p, video, centers, out, stream);
    case DType::kDouble: return launch_typed<double>(p, video, centers, out, stream);
    default: TORCH_CHECK(false, "crop_cubes (CUDA): unsupported video dtype");
  }
}

}  // namespace cuda
}  // namespace cubecrop
