// CUDA kernel of cubecrop::crop_cubes_int (test-time integer crop).
//
// Thread mapping (review note):
//   blockIdx.x = cube n * K + k; thread 0 computes the cube's integer start
//   (int_cube_start, rounded in float64 like every backend) and whether its
//   rows can be read as aligned packets, once, into shared memory.
//   blockIdx.y and threadIdx.x cover the cube's items in a grid-stride loop:
//   item = VEC consecutive output voxels along W of one row (c, dt, dh),
//   VEC = 16 bytes / the wider of the two element types, so consecutive
//   threads read and write consecutive packets (16-byte stores; uint8 -> fp32
//   reads 4-byte packets). A channels-last video (N, T, H, W, C) is the same
//   kernel on the permuted view: W then has stride C, read element by element.
//   Widths that are not a multiple of VEC use masked element accesses.
// Two kernel families keep the instantiation count small (build time):
//   - copy: out_dtype == video dtype without mean/std, instantiated per element
//     width (1, 2, 4, 8 bytes) since a copy does not care about the type;
//   - convert: the fused cast/normalisation (x - mean[c]) / std[c] in fp32
//     (fp64 for fp64 output), for videos of uint8/fp16/bf16/fp32/fp64 and
//     fp16/bf16/fp32/fp64 outputs, with 32-bit indexing.
//   Anything else (an int32 video to fp32, a 64-bit-indexed normalised crop)
//   copies first and normalises with ATen in fp64, like the reference.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <optional>

#include "cuda_utils.cuh"

namespace cubecrop {
namespace cuda {
namespace {

using cuda_items::CubeShape;

template <typename in_t, typename out_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    crop_int_kernel(const in_t* __restrict__ video, int64_t batch_stride, const double* __restrict__ centers,
                    int64_t cubes_per_video, CubeShape<index_t> shape, bool strides_ok, const float* __restrict__ mean,
                    const float* __restrict__ std, int64_t cube_numel, out_t* __restrict__ out) {
  constexpr int VEC = cuda_items::vector_width(sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  __shared__ index_t start[3];
  __shared__ bool packets;
  const int64_t cube = blockIdx.x;
  if (threadIdx.x == 0) {
    index_t s[3];
    cuda_items::int_cube_starts(centers + cube * 3, shape, s);
    start[0] = s[0];
    start[1] = s[1];
    start[2] = s[2];
    packets = cuda_items::row_loads_vectorised<VEC, index_t>(strides_ok, s[2], shape.size[2], shape.extent[2], 0);
  }
  __syncthreads();
  const in_t* video_n = video + (cube / cubes_per_video) * batch_stride;
  out_t* out_cube = out + cube * cube_numel;
  const int64_t items = cuda_items::forward_items_per_cube<VEC>(shape);
  for (int64_t item = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; item < items;
       item += int64_t{gridDim.y} * blockDim.x) {
    cuda_items::crop_int_item<VEC, in_t, out_t, acc_t, index_t>(video_n, shape, start, packets, mean, std,
                                                                static_cast<index_t>(item), out_cube);
  }
}

template <typename in_t, typename out_t, typename acc_t, typename index_t>
void launch_crop_int(const at::Tensor& video, const at::Tensor& centers, const std::array<int64_t, 3>& size,
                     const float* mean, const float* std, at::Tensor& out) {
  constexpr int VEC = cuda_items::vector_width(sizeof(in_t) > sizeof(out_t) ? sizeof(in_t) : sizeof(out_t));
  const auto shape = make_shape<index_t>(video, size, kZeros);
  const bool strides_ok =
      cuda_items::strides_allow_packets(video.const_data_ptr(), sizeof(in_t), VEC, video.stride(0), shape);
  const int64_t cubes = out.size(0) * out.size(1);
  const dim3 grid = cube_grid(cubes, cuda_items::forward_items_per_cube<VEC>(shape));
  const int64_t cube_numel = out.numel() / cubes;
  crop_int_kernel<in_t, out_t, acc_t, index_t><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      static_cast<const in_t*>(video.const_data_ptr()), video.stride(0), centers.const_data_ptr<double>(),
      centers.size(1), shape, strides_ok, mean, std, cube_numel, static_cast<out_t*>(out.mutable_data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Copies in the video's own dtype, dispatched on the element width only.
void copy_crop(const at::Tensor& video, const at::Tensor& centers, const std::array<int64_t, 3>& size, bool use_int32,
               at::Tensor& out) {
  dispatch_index_type(use_int32, [&](auto index_tag) {
    using index_t = decltype(index_tag);
    switch (video.element_size()) {
      case 1: return launch_crop_int<uint8_t, uint8_t, float, index_t>(video, centers, size, nullptr, nullptr, out);
      case 2: return launch_crop_int<uint16_t, uint16_t, float, index_t>(video, centers, size, nullptr, nullptr, out);
      case 4: return launch_crop_int<uint32_t, uint32_t, float, index_t>(video, centers, size, nullptr, nullptr, out);
      case 8: return launch_crop_int<uint64_t, uint64_t, float, index_t>(video, centers, size, nullptr, nullptr, out);
      default: TORCH_CHECK(false, "crop_cubes_int: unsupported element size ", video.element_size());
    }
  });
}

bool fused_input(at::ScalarType t) {
  return t == at::kByte || t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

bool fused_output(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

void convert_crop(const at::Tensor& video, const at::Tensor& centers, const std::array<int64_t, 3>& size,
                  const float* mean, const float* std, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kByte, at::kHalf, at::kBFloat16, video.scalar_type(), "cubecrop_int_in", [&] {
    using in_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "cubecrop_int_out", [&] {
      using out_t = scalar_t;
      using acc_t = std::conditional_t<std::is_same_v<out_t, double>, double, float>;
      launch_crop_int<in_t, out_t, acc_t, int32_t>(video, centers, size, mean, std, out);
    });
  });
}

at::Tensor crop_cubes_int_cuda(const at::Tensor& video_in, const at::Tensor& centers_in, at::IntArrayRef size_in,
                               bool channels_last, const std::optional<at::Tensor>& mean_in,
                               const std::optional<at::Tensor>& std_in, at::ScalarType out_dtype) {
  TORCH_CHECK(video_in.defined() && video_in.is_cuda(), "video must be a CUDA tensor for the cuda backend");
  TORCH_CHECK(video_in.dim() == 5, "video must be a 5-D tensor ", channels_last ? "(N, T, H, W, C)" : "(N, C, T, H, W)",
              ", got shape ", video_in.sizes());
  TORCH_CHECK(!video_in.is_complex() && video_in.scalar_type() != at::kBool, "video must have a real dtype, got ",
              video_in.scalar_type());
  // The kernel works on the (N, C, T, H, W) view; channels-last is only a stride permutation.
  const at::Tensor video = channels_last ? video_in.permute({0, 4, 1, 2, 3}) : video_in;
  check_centers(centers_in, video, at::kDouble);
  const auto size = check_size(size_in);
  for (int a = 0; a < 3; ++a)
    TORCH_CHECK(size[a] <= video.size(a + 2), "size ", size_in, " must fit inside the video's (T, H, W) = ",
                video.sizes().slice(2), " for crop_cubes_int");
  const int64_t c = video.size(1);
  at::Tensor stats[2];
  const char* names[2] = {"mean", "std"};
  const std::optional<at::Tensor>* given[2] = {&mean_in, &std_in};
  for (int i = 0; i < 2; ++i) {
    if (!given[i]->has_value()) continue;
    const at::Tensor& t = given[i]->value();
    check_cuda_tensor(t, names[i], video);
    TORCH_CHECK(t.scalar_type() == at::kFloat, names[i], " must be float32, got ", t.scalar_type());
    TORCH_CHECK(t.dim() == 1 && t.size(0) == c, names[i], " must have one value per channel (", c, "), got shape ",
                t.sizes());
    stats[i] = t.contiguous();
  }
  const bool normalise = stats[0].defined() || stats[1].defined();
  TORCH_CHECK(!normalise || at::isFloatingType(out_dtype), "out_dtype must be floating when mean/std are given, got ",
              out_dtype);

  const c10::cuda::CUDAGuard guard(video.device());
  const at::Tensor centers = centers_in.contiguous();
  const int64_t n = video.size(0), k = centers.size(1);
  at::Tensor out = at::empty({n, k, c, size[0], size[1], size[2]}, video.options().dtype(out_dtype));
  if (out.numel() == 0) return out;

  const bool use_int32 = fits_int32({batch_item_span(video), out.numel() / (n * k)});
  const float* mean = stats[0].defined() ? stats[0].const_data_ptr<float>() : nullptr;
  const float* std = stats[1].defined() ? stats[1].const_data_ptr<float>() : nullptr;
  if (!normalise && out_dtype == video.scalar_type()) {
    copy_crop(video, centers, size, use_int32, out);
  } else if (use_int32 && fused_input(video.scalar_type()) && fused_output(out_dtype)) {
    convert_crop(video, centers, size, mean, std, out);
  } else {
    at::Tensor raw = at::empty({n, k, c, size[0], size[1], size[2]}, video.options());
    copy_crop(video, centers, size, use_int32, raw);
    if (!normalise) {
      out.copy_(raw);
    } else {
      at::Tensor x = raw.to(at::kDouble);
      if (stats[0].defined()) x = x - stats[0].to(at::kDouble).view({1, 1, c, 1, 1, 1});
      if (stats[1].defined()) x = x / stats[1].to(at::kDouble).view({1, 1, c, 1, 1, 1});
      out.copy_(x);
    }
  }
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace cubecrop

TORCH_LIBRARY_IMPL(cubecrop, CUDA, m) { m.impl("crop_cubes_int", &cubecrop::cuda::crop_cubes_int_cuda); }
