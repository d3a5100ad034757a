// Host side of the CUDA backend: argument checks, allocation, the 32/64-bit
// index choice, the atomic-versus-deterministic choice, and the dispatcher
// registration (TORCH_LIBRARY_IMPL(cubecrop, CUDA, m)). The kernels live in the
// .cu files behind launch.h; this file is compiled by the host compiler once,
// so nvcc's per-arch passes never parse ATen.
// Individual ATen headers rather than ATen/ATen.h and ATen/cuda/CUDAContext.h: this
// file is on the CUDA build's critical path, and those two roughly double its time.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <vector>

#include "check.h"
#include "cubecrop_math.h"
#include "launch.h"

namespace cubecrop {
namespace cuda {
namespace {

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return DType::kHalf;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kFloat: return DType::kFloat;
    case at::kDouble: return DType::kDouble;
    case at::kByte: return DType::kUInt8;
    default: break;
  }
  switch (at::elementSize(t)) {  // copy-only crops: any type of that width
    case 1: return DType::kUInt8;
    case 2: return DType::kUInt16;
    case 4: return DType::kUInt32;
    case 8: return DType::kUInt64;
    default: TORCH_CHECK(false, "the cuda backend does not support dtype ", t);
  }
}

constexpr c10::DeviceType kCuda = c10::DeviceType::CUDA;

// A second tensor of a call: a CUDA tensor on the video's device.
void check_cuda(const at::Tensor& t, const char* name, const at::Tensor& video) {
  check::device(t, name, kCuda, "cuda");
  check::same_device(t, name, video);
}

// The largest element offset inside one batch item (dims 1..4), plus one.
int64_t batch_item_span(const at::Tensor& t) {
  int64_t span = 1;
  for (int64_t d = 1; d < t.dim(); ++d) span += (t.size(d) - 1) * t.stride(d);
  return span;
}

// 32-bit indexing when every per-batch-item / per-cube quantity is at most 2^30:
// offsets then never come near overflow, even with the few voxels of padding and
// the packet width that the index arithmetic adds. Batch and cube base pointers
// are always formed in 64 bits, so a tensor of more than 2^31 elements in total
// still runs the 32-bit kernels when each item is small.
bool fits_int32(std::initializer_list<int64_t> quantities) {
  for (int64_t q : quantities)
    if (q > (int64_t{1} << 30)) return false;
  return true;
}

// Problem description of an (N, C, T, H, W) view (any strides).
CropProblem make_problem(const at::Tensor& video, int64_t cubes_per_video, const std::array<int64_t, 3>& size,
                         int64_t padding_mode) {
  CropProblem p;
  p.batch = video.size(0);
  p.cubes_per_video = cubes_per_video;
  p.channels = video.size(1);
  for (int a = 0; a < 3; ++a) {
    p.extent[a] = video.size(a + 2);
    p.size[a] = size[a];
  }
  for (int d = 0; d < 5; ++d) p.stride[d] = video.stride(d);
  p.padding_mode = padding_mode;
  return p;
}

at::Tensor crop_cubes_cuda(const at::Tensor& video, const at::Tensor& centers_in, at::IntArrayRef size_in,
                           int64_t padding_mode) {
  const auto size = check::crop_inputs(video, centers_in, size_in, padding_mode, kCuda, "cuda");
  const c10::cuda::CUDAGuard guard(video.device());
  const at::Tensor centers = centers_in.contiguous();
  const int64_t k = centers.size(1), c = video.size(1);
  at::Tensor out = at::empty(check::out_shape(video, centers, size), video.options());
  if (out.numel() == 0) return out;  // K = 0, N = 0 or C = 0: no launch

  CropProblem p = make_problem(video, k, size, padding_mode);
  p.use_int32 = fits_int32({batch_item_span(video), c * size[0] * size[1] * size[2]});
  launch_crop_forward(to_dtype(video.scalar_type()), p, video.const_data_ptr(), centers.const_data_ptr(),
                      out.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream());
  return out;
}

std::tuple<at::Tensor, at::Tensor> crop_cubes_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& video,
                                                            const at::Tensor& centers_in, at::IntArrayRef size_in,
                                                            int64_t padding_mode, bool need_video_grad,
                                                            bool need_centers_grad) {
  const auto size = check::crop_inputs(video, centers_in, size_in, padding_mode, kCuda, "cuda");
  check_cuda(grad_out_in, "grad_out", video);
  check::grad_out(grad_out_in, video, check::out_shape(video, centers_in, size));
  const auto dtype = video.scalar_type();

  const c10::cuda::CUDAGuard guard(video.device());
  const at::Tensor centers = centers_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t n = video.size(0), k = centers.size(1), c = video.size(1);
  at::Tensor grad_video = need_video_grad ? at::empty(video.sizes(), video.options()) : at::empty({0}, video.options());
  at::Tensor grad_centers = need_centers_grad ? at::empty({n, k, 3}, centers.options()) : at::empty({0}, centers.options());
  if (!need_video_grad && !need_centers_grad) return {grad_video, grad_centers};
  if (grad_out.numel() == 0) {  // K = 0, N = 0 or C = 0: no cube reads any voxel
    grad_video.zero_();
    grad_centers.zero_();
    return {grad_video, grad_centers};
  }

  CropProblem p = make_problem(video, k, size, padding_mode);
  const int64_t cube_numel = c * size[0] * size[1] * size[2];
  const int64_t window_numel = c * (size[0] + 1) * (size[1] + 1) * (size[2] + 1);
  const int64_t voxels = c * video.size(2) * video.size(3) * video.size(4);
  p.use_int32 = fits_int32({batch_item_span(video), window_numel, voxels, k * cube_numel});
  const DType scalar = to_dtype(dtype);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  // The gather writes every voxel once in the video's dtype (no zero fill, no atomics), adding
  // a voxel's window voxels in a fixed order in acc_type and rounding once; it is
  // deterministic, but costs about 150 SASS instructions per voxel and cube against about 60
  // per window voxel for the fused atomics (benchmarks/results/sass_sm90.md): it runs only
  // where determinism is asked for. The atomics add into the zero-filled gradient in the
  // video's dtype, fp16/bf16 included (one rounding per add, as grid_sampler's backward).
  const bool gather = need_video_grad && at::globalContext().deterministicAlgorithms();
  const bool atomic_video = need_video_grad && !gather;

  if (atomic_video || need_centers_grad) {
    if (atomic_video) grad_video.zero_();
    at::Tensor partials;
    if (need_centers_grad) partials = at::empty({n * k, centre_chunks(p), 3}, centers.options());
    launch_crop_backward_window(scalar, p, grad_out.const_data_ptr(), video.const_data_ptr(), centers.const_data_ptr(),
                                atomic_video ? grad_video.mutable_data_ptr() : nullptr,
                                need_centers_grad ? partials.mutable_data_ptr() : nullptr,
                                need_centers_grad ? grad_centers.mutable_data_ptr() : nullptr, stream);
  }
  if (gather) {
    launch_crop_backward_gather(scalar, p, grad_out.const_data_ptr(), centers.const_data_ptr(),
                                grad_video.mutable_data_ptr(), stream);
  }
  return {grad_video, grad_centers};
}

at::Tensor crop_cubes_int_cuda(const at::Tensor& video_in, const at::Tensor& centers_in, at::IntArrayRef size_in,
                               bool channels_last, const std::optional<at::Tensor>& mean_in,
                               const std::optional<at::Tensor>& std_in, at::ScalarType out_dtype) {
  check::device(video_in, "video", kCuda, "cuda");
  const char* layout = channels_last ? "(N, T, H, W, C)" : "(N, C, T, H, W)";
  TORCH_CHECK(video_in.dim() == 5, "video must be a 5-D tensor ", layout, ", got shape ", video_in.sizes());
  // The kernels work on the (N, C, T, H, W) view; channels-last is only a stride permutation.
  const at::Tensor video = channels_last ? video_in.permute({0, 4, 1, 2, 3}) : video_in;
  check::video(video_in, video, layout);
  check::int_video_dtype(video_in);
  check_cuda(centers_in, "centers", video);
  check::centers(centers_in, video, at::kDouble);
  const auto size = check::size(size_in);
  check::int_size_fits(size, size_in, video);
  const int64_t c = video.size(1);
  at::Tensor stats[2];
  const char* names[2] = {"mean", "std"};
  const std::optional<at::Tensor>* given[2] = {&mean_in, &std_in};
  for (int i = 0; i < 2; ++i) {
    if (!given[i]->has_value()) continue;
    const at::Tensor& t = given[i]->value();
    check_cuda(t, names[i], video);
    check::statistic(t, names[i], c);
    stats[i] = t.contiguous();
  }
  const bool normalise = stats[0].defined() || stats[1].defined();
  check::int_out_dtype(normalise, out_dtype);

  const c10::cuda::CUDAGuard guard(video.device());
  const at::Tensor centers = centers_in.contiguous();
  const int64_t n = video.size(0), k = centers.size(1);
  at::Tensor out = at::empty({n, k, c, size[0], size[1], size[2]}, video.options().dtype(out_dtype));
  if (out.numel() == 0) return out;

  CropProblem p = make_problem(video, k, size, kZeros);
  p.use_int32 = fits_int32({batch_item_span(video), out.numel() / (n * k)});
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const float* mean = stats[0].defined() ? stats[0].const_data_ptr<float>() : nullptr;
  const float* std = stats[1].defined() ? stats[1].const_data_ptr<float>() : nullptr;
  const DType in_type = to_dtype(video.scalar_type());
  if (!normalise && out_dtype == video.scalar_type()) {
    launch_crop_int(in_type, in_type, p, video.const_data_ptr(), centers.const_data_ptr(), nullptr, nullptr,
                    out.mutable_data_ptr(), stream);
    return out;
  }
  const bool fused_types = video.scalar_type() == at::kByte || at::isFloatingType(video.scalar_type());
  if (p.use_int32 && fused_types && at::isFloatingType(out_dtype) &&
      crop_int_fused(in_type, to_dtype(out_dtype))) {
    launch_crop_int(in_type, to_dtype(out_dtype), p, video.const_data_ptr(), centers.const_data_ptr(), mean, std,
                    out.mutable_data_ptr(), stream);
    return out;
  }
  // No fused kernel for this pair: crop in the video's dtype, then cast/normalise with ATen in
  // the op's precision (float32, float64 for a float64 output: csrc/ops.cpp).
  at::Tensor raw = at::empty({n, k, c, size[0], size[1], size[2]}, video.options());
  launch_crop_int(in_type, in_type, p, video.const_data_ptr(), centers.const_data_ptr(), nullptr, nullptr,
                  raw.mutable_data_ptr(), stream);
  if (!normalise) return out.copy_(raw);
  const at::ScalarType acc = out_dtype == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor x = raw.to(acc);
  if (stats[0].defined()) x = x.sub(stats[0].to(acc).view({1, 1, c, 1, 1, 1}));
  if (stats[1].defined()) x = x.div(stats[1].to(acc).view({1, 1, c, 1, 1, 1}));
  return out.copy_(x);
}

}  // namespace
}  // namespace cuda
}  // namespace cubecrop

TORCH_LIBRARY_IMPL(cubecrop, CUDA, m) {
  m.impl("crop_cubes", &cubecrop::cuda::crop_cubes_cuda);
  m.impl("crop_cubes_backward", &cubecrop::cuda::crop_cubes_backward_cuda);
  m.impl("crop_cubes_int", &cubecrop::cuda::crop_cubes_int_cuda);
}
