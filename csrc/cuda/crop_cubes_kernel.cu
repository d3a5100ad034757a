// CUDA kernel of cubecrop::crop_cubes (trilinear cube crop); host side in cuda_ops.cpp.
//
// Thread mapping (cube_items.h): blockIdx.z = cube n * K + k, blockIdx.y = output
// plane (c, dt), blockIdx.x = a block of 32 output rows dh; a 32 x 8 block, thread
// (tx, ty) writes VEC consecutive outputs (16 bytes: 4 fp32, 8 fp16/bf16, 2 fp64) of
// each of its rows per step, so a warp writes 512 contiguous bytes of one row.
// Every thread computes the cube's geometry and tap weights itself (the same
// three centre loads for the whole block) and picks one of three row loops:
//   - interior + packets: every tap inside and the rows 16-byte aligned: one
//     packet plus one element per tap row, 32-bit offsets, no per-tap checks;
//   - interior: every tap inside, element loads (any x start, any W stride);
//   - general: taps resolved with the padding rule (t, y once per row).
// Accumulation in acc_type (fp32 for fp16/bf16). Indexing: 64-bit batch/cube
// base pointers; index_t (int32 or int64, chosen by fits_int32) inside them.
#include "kernel_common.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeGeometry;
using cuda_items::CubeShape;

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    crop_forward_kernel(const scalar_t* __restrict__ video, int64_t batch_stride, const acc_t* __restrict__ centers,
                        int64_t cubes_per_video, int64_t cubes, CubeShape<index_t> shape, bool strides_ok,
                        int64_t cube_numel, scalar_t* __restrict__ out) {
  constexpr int VEC = cuda_items::vector_width(sizeof(scalar_t));
  const int64_t planes = int64_t{shape.channels} * shape.size[0];
  for (int64_t cube = blockIdx.z; cube < cubes; cube += gridDim.z) {
    const CubeGeometry<acc_t, index_t> g = cuda_items::cube_geometry(centers + cube * 3, shape);
    acc_t w[4];
    tap_weights<acc_t>(g.frac[0], g.frac[1], w);
    const bool packets =
        cuda_items::row_loads_vectorised<VEC, index_t>(strides_ok, g.start[2], shape.size[2], shape.extent[2], 1);
    const cuda_items::RowPath path = cuda_items::row_path(g, packets);
    const scalar_t* video_n = video + (cube / cubes_per_video) * batch_stride;
    scalar_t* out_cube = out + cube * cube_numel;
    for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
      const index_t c = static_cast<index_t>(plane / shape.size[0]);
      const index_t dt = static_cast<index_t>(plane - int64_t{c} * shape.size[0]);
      cuda_items::forward_thread<VEC, scalar_t, acc_t, index_t>(video_n, shape, g, w, path, c, dt,
                                                                static_cast<index_t>(blockIdx.x), threadIdx.y,
                                                                threadIdx.x, out_cube);
    }
  }
}

template <typename scalar_t>
void launch_typed(const CropProblem& p, const void* video, const void* centers, void* out, cudaStream_t stream) {
  using acc_t = acc_type<scalar_t>;
  constexpr int VEC = cuda_items::vector_width(sizeof(scalar_t));
  const int64_t cube_numel = p.channels * p.size[0] * p.size[1] * p.size[2];
  const int64_t cubes = p.batch * p.cubes_per_video;
  dispatch_index_type(p.use_int32, [&](auto index_tag) {
    using index_t = decltype(index_tag);
    const auto shape = make_shape<index_t>(p);
    const bool strides_ok = cuda_items::strides_allow_packets(video, sizeof(scalar_t), VEC, p.stride[0], shape);
    crop_forward_kernel<scalar_t, acc_t, index_t><<<row_grid(cubes, p.channels * p.size[0], p.size[1]), block_dims(), 0,
                                                    stream>>>(
        static_cast<const scalar_t*>(video), p.stride[0], static_cast<const acc_t*>(centers), p.cubes_per_video, cubes,
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
