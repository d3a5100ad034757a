// CUDA kernel of cubecrop::crop_cubes_int (test-time integer crop); host side in cuda_ops.cpp.
//
// Thread mapping (cube_items.h, as the forward crop): blockIdx.z = cube n * K + k,
// blockIdx.y = output plane (c, dt), blockIdx.x = a block of 32 rows; 32 x 8
// threads, each writing VEC consecutive outputs of its rows per step, VEC = 16
// bytes / the wider of the two element types, so consecutive threads read and
// write consecutive packets (16-byte stores; uint8 -> fp32 reads 4-byte packets).
// Every thread computes the cube's integer start (int_cube_start, rounded in
// float64 like every backend) and whether its rows can be read as aligned
// packets. A channels-last video (N, T, H, W, C) is the same kernel on the
// permuted view: W then has stride C, read element by element. Widths that are
// not a multiple of VEC use masked element accesses.
// Two kernel families keep the instantiation count small (build time):
//   - copy: out_dtype == video dtype without mean/std, instantiated per element
//     width (1, 2, 4, 8 bytes) since a copy does not care about the type;
//   - convert: the fused cast/normalisation normalise(x, mean[c], std[c]) in fp32
//     (fp64 for fp64 output), for videos of uint8/fp16/bf16/fp32/fp64 and
//     fp16/bf16/fp32/fp64 outputs, with 32-bit indexing.
//   Anything else (an int32 video to fp32, a 64-bit-indexed normalised crop)
//   copies first and normalises with ATen in the same precision (cuda_ops.cpp).
#include "kernel_common.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeShape;

template <typename in_t, typename out_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    crop_int_kernel(const in_t* __restrict__ video, int64_t batch_stride, const double* __restrict__ centers,
                    int64_t cubes_per_video, int64_t cubes, CubeShape<index_t> shape, bool strides_ok,
                    const float* __restrict__ mean, const float* __restrict__ std, int64_t cube_numel,
                    out_t* __restrict__ out) {
  using acc_t = acc_type<out_t>;
  constexpr int VEC = cuda_items::vector_width(sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  const int64_t planes = int64_t{shape.channels} * shape.size[0];
  const bool normalised = mean != nullptr || std != nullptr;
  for (int64_t cube = blockIdx.z; cube < cubes; cube += gridDim.z) {
    index_t start[3];
    cuda_items::int_cube_starts(centers + cube * 3, shape, start);
    const bool packets =
        cuda_items::row_loads_vectorised<VEC, index_t>(strides_ok, start[2], shape.size[2], shape.extent[2], 0);
    const in_t* video_n = video + (cube / cubes_per_video) * batch_stride;
    out_t* out_cube = out + cube * cube_numel;
    for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
      const index_t c = static_cast<index_t>(plane / shape.size[0]);
      const index_t dt = static_cast<index_t>(plane - int64_t{c} * shape.size[0]);
      const acc_t m = mean != nullptr ? static_cast<acc_t>(mean[c]) : static_cast<acc_t>(0);
      const acc_t sd = std != nullptr ? static_cast<acc_t>(std[c]) : static_cast<acc_t>(1);
      const index_t bx = static_cast<index_t>(blockIdx.x);
      if (packets) {
        cuda_items::int_thread<VEC, true, in_t, out_t, acc_t, index_t>(video_n, shape, start, m, sd, normalised, c,
                                                                       dt, bx, threadIdx.y, threadIdx.x, out_cube);
      } else {
        cuda_items::int_thread<VEC, false, in_t, out_t, acc_t, index_t>(video_n, shape, start, m, sd, normalised, c,
                                                                        dt, bx, threadIdx.y, threadIdx.x, out_cube);
      }
    }
  }
}

template <typename in_t, typename out_t, typename index_t>
void launch_typed(const CropProblem& p, const void* video, const void* centers, const float* mean, const float* std,
                  void* out, cudaStream_t stream) {
  constexpr int VEC = cuda_items::vector_width(sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  const auto shape = make_shape<index_t>(p);
  const bool strides_ok = cuda_items::strides_allow_packets(video, sizeof(in_t), VEC, p.stride[0], shape);
  const int64_t cubes = p.batch * p.cubes_per_video;
  const int64_t cube_numel = p.channels * p.size[0] * p.size[1] * p.size[2];
  crop_int_kernel<in_t, out_t, index_t><<<row_grid(cubes, p.channels * p.size[0], p.size[1]), block_dims(), 0,
                                          stream>>>(static_cast<const in_t*>(video), p.stride[0],
                                                    static_cast<const double*>(centers), p.cubes_per_video, cubes,
                                                    shape, strides_ok, mean, std, cube_numel,
                                                    static_cast<out_t*>(out));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Calls body(T{}) with the C++ type of a fused-kernel dtype.
template <typename F>
void dispatch_fused_type(DType t, F&& body) {
  switch (t) {
    case DType::kUInt8: return body(uint8_t{});
    case DType::kHalf: return body(c10::Half{});
    case DType::kBFloat16: return body(c10::BFloat16{});
    case DType::kFloat: return body(float{});
    case DType::kDouble: return body(double{});
    default: TORCH_CHECK(false, "crop_cubes_int (CUDA): no fused kernel for this dtype");
  }
}

}  // namespace

bool crop_int_fused(DType in, DType out) {
  const bool in_ok = in == DType::kUInt8 || in == DType::kHalf || in == DType::kBFloat16 || in == DType::kFloat ||
                     in == DType::kDouble;
  const bool out_ok = out == DType::kHalf || out == DType::kBFloat16 || out == DType::kFloat || out == DType::kDouble;
  return in_ok && out_ok;
}

void launch_crop_int(DType in, DType out, const CropProblem& p, const void* video, const void* centers,
                     const float* mean, const float* std, void* out_data, cudaStream_t stream) {
  if (in == out && mean == nullptr && std == nullptr) {  // a copy: only the element width matters
    dispatch_index_type(p.use_int32, [&](auto index_tag) {
      using index_t = decltype(index_tag);
      switch (in) {
        case DType::kUInt8:
          return launch_typed<uint8_t, uint8_t, index_t>(p, video, centers, nullptr, nullptr, out_data, stream);
        case DType::kUInt16:
        case DType::kHalf:
        case DType::kBFloat16:
          return launch_typed<uint16_t, uint16_t, index_t>(p, video, centers, nullptr, nullptr, out_data, stream);
        case DType::kUInt32:
        case DType::kFloat:
          return launch_typed<uint32_t, uint32_t, index_t>(p, video, centers, nullptr, nullptr, out_data, stream);
        case DType::kUInt64:
        case DType::kDouble:
          return launch_typed<uint64_t, uint64_t, index_t>(p, video, centers, nullptr, nullptr, out_data, stream);
      }
    });
    return;
  }
  TORCH_CHECK(p.use_int32 && crop_int_fused(in, out), "crop_cubes_int (CUDA): no fused kernel for this case");
  dispatch_fused_type(in, [&](auto in_tag) {
    using in_t = decltype(in_tag);
    dispatch_fused_type(out, [&](auto out_tag) {
      using out_t = decltype(out_tag);
      if constexpr (!std::is_same_v<out_t, uint8_t>) {
        launch_typed<in_t, out_t, int32_t>(p, video, centers, mean, std, out_data, stream);
      }
    });
  });
}

}  // namespace cuda
}  // namespace cubecrop
