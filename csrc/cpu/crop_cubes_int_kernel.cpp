// CPU kernel of cubecrop::crop_cubes_int: the test-time integer crop.
//
// Each cube starts at int_cube_start (round(c - D/2) in float64, clamped
// inside), so the crop is a strided copy. One parallel unit is one cube row
// (n, k, t_out, y_out) for all channels, so a channels-last row (x, c
// interleaved) is read once. The optional (x - mean) / std is fused: it is
// cubecrop::normalise in float32 (float64 for a float64 output), as on every
// backend (csrc/ops.cpp); for 8-bit videos through a per-channel 256-entry
// table built that way.
#include <ATen/Dispatch.h>
#include <ATen/Dispatch_v2.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <optional>

#include "cpu/cpu_common.h"

namespace cubecrop::cpu {
namespace {

// The input as a logical (N, C, T, H, W) array: sizes and element strides.
struct VideoView {
  int64_t n, c, t, h, w;
  int64_t sn, sc, st, sh, sw;
};

VideoView video_view(const at::Tensor& video, bool channels_last) {
  const at::Tensor v = channels_last ? video.permute({0, 4, 1, 2, 3}) : video;
  return {v.size(0), v.size(1), v.size(2), v.size(3), v.size(4),
          v.stride(0), v.stride(1), v.stride(2), v.stride(3), v.stride(4)};
}

// Runs row_fn(src, dst, count, channel) for every cube row and channel:
// src points at the row's first input element (W stride view.sw), dst at the
// contiguous output row of (N, K, C, Dt, Dh, Dw).
template <typename in_t, typename out_t, typename RowFn>
void for_each_cube_row(const in_t* video, const VideoView& view, const std::vector<int64_t>& starts, int64_t K,
                       CubeSize size, out_t* out, const RowFn& row_fn) {
  const int64_t rows = view.n * K * size.t * size.h;
  at::parallel_for(0, rows, grain_for(view.c * size.w), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t y_out = r % size.h;
      const int64_t t_out = (r / size.h) % size.t;
      const int64_t nk = r / (size.h * size.t);
      const int64_t n = nk / K;
      const int64_t* start = starts.data() + 3 * nk;
      const in_t* src = video + n * view.sn + (start[0] + t_out) * view.st + (start[1] + y_out) * view.sh +
                        start[2] * view.sw;
      out_t* dst = out + ((nk * view.c) * size.t + t_out) * size.h * size.w + y_out * size.w;
      const int64_t channel_stride_out = size.t * size.h * size.w;
      for (int64_t c = 0; c < view.c; ++c) row_fn(src + c * view.sc, dst + c * channel_stride_out, size.w, c);
    }
  });
}

// Plain copy in the video's dtype.
template <typename scalar_t>
void copy_cubes(const at::Tensor& video, const VideoView& view, const std::vector<int64_t>& starts, int64_t K,
                CubeSize size, at::Tensor& out) {
  const int64_t sw = view.sw;
  for_each_cube_row<scalar_t, scalar_t>(
      video.const_data_ptr<scalar_t>(), view, starts, K, size, out.mutable_data_ptr<scalar_t>(),
      [sw](const scalar_t* src, scalar_t* dst, int64_t count, int64_t) {
        if (sw == 1) {
          std::memcpy(dst, src, sizeof(scalar_t) * count);
        } else {
          for (int64_t x = 0; x < count; ++x) dst[x] = src[x * sw];
        }
      });
}

// out = normalise(x, mean, std) in acc_type<out_t>, rounded once to out_t.
template <typename in_t, typename out_t>
void normalize_cubes(const at::Tensor& video, const VideoView& view, const std::vector<int64_t>& starts, int64_t K,
                     CubeSize size, const std::vector<float>& mean_f, const std::vector<float>& stdev_f,
                     at::Tensor& out) {
  using acc_t = acc_type<out_t>;
  const std::vector<acc_t> mean(mean_f.begin(), mean_f.end()), stdev(stdev_f.begin(), stdev_f.end());
  const in_t* vp = video.const_data_ptr<in_t>();
  out_t* op = out.mutable_data_ptr<out_t>();
  const int64_t sw = view.sw;
  if constexpr (sizeof(in_t) == 1) {
    // 8-bit input: every possible value's result, per channel, in a table.
    std::vector<out_t> table(view.c * 256);
    for (int64_t c = 0; c < view.c; ++c) {
      for (int v = 0; v < 256; ++v) {
        const in_t value = static_cast<in_t>(static_cast<uint8_t>(v));
        table[c * 256 + v] = static_cast<out_t>(normalise(static_cast<acc_t>(value), mean[c], stdev[c]));
      }
    }
    const out_t* lut = table.data();
    for_each_cube_row<in_t, out_t>(vp, view, starts, K, size, op,
                                   [sw, lut](const in_t* src, out_t* dst, int64_t count, int64_t c) {
                                     const out_t* channel_lut = lut + c * 256;
                                     for (int64_t x = 0; x < count; ++x) {
                                       dst[x] = channel_lut[static_cast<uint8_t>(src[x * sw])];
                                     }
                                   });
  } else {
    const acc_t* m = mean.data();
    const acc_t* s = stdev.data();
    for_each_cube_row<in_t, out_t>(vp, view, starts, K, size, op,
                                   [sw, m, s](const in_t* src, out_t* dst, int64_t count, int64_t c) {
                                     const acc_t mc = m[c], sc = s[c];
                                     if (sw == 1) {
                                       for (int64_t x = 0; x < count; ++x) {
                                         dst[x] = static_cast<out_t>(normalise(static_cast<acc_t>(src[x]), mc, sc));
                                       }
                                     } else {
                                       for (int64_t x = 0; x < count; ++x) {
                                         dst[x] = static_cast<out_t>(normalise(static_cast<acc_t>(src[x * sw]), mc, sc));
                                       }
                                     }
                                   });
  }
}

std::vector<float> statistic_values(const std::optional<at::Tensor>& value, const char* name, int64_t channels,
                                    float fallback) {
  if (!value.has_value()) return std::vector<float>(channels, fallback);
  const at::Tensor& t = *value;
  check::device(t, name, kCpu, "cpu");
  check::statistic(t, name, channels);
  const at::Tensor c = t.contiguous();
  const float* p = c.const_data_ptr<float>();
  return std::vector<float>(p, p + channels);
}

at::Tensor crop_cubes_int_cpu(const at::Tensor& video, const at::Tensor& centers, c10::IntArrayRef size_ref,
                              bool channels_last, const std::optional<at::Tensor>& mean,
                              const std::optional<at::Tensor>& std_, at::ScalarType out_dtype) {
  check::device(video, "video", kCpu, "cpu");
  const char* layout = channels_last ? "(N, T, H, W, C)" : "(N, C, T, H, W)";
  TORCH_CHECK(video.dim() == 5, "video must be a 5-D tensor ", layout, ", got shape ", video.sizes());
  const at::Tensor ncthw = channels_last ? video.permute({0, 4, 1, 2, 3}) : video;
  check::video(video, ncthw, layout);
  check::int_video_dtype(video);
  check::device(centers, "centers", kCpu, "cpu");
  check::centers(centers, ncthw, at::kDouble);
  const auto size3 = check::size(size_ref);
  check::int_size_fits(size3, size_ref, ncthw);
  const CubeSize size = cube_size(size3);
  const VideoView view = video_view(video, channels_last);
  const bool normalize = mean.has_value() || std_.has_value();
  check::int_out_dtype(normalize, out_dtype);
  const std::vector<float> mean_v = statistic_values(mean, "mean", view.c, 0.0f);
  const std::vector<float> std_v = statistic_values(std_, "std", view.c, 1.0f);
  for (float s : std_v) TORCH_CHECK(s != 0.0f, "std must be non-zero for every channel, got ", s);

  const int64_t K = centers.size(1);
  const at::Tensor centers_c = centers.contiguous();
  const double* cp = centers_c.const_data_ptr<double>();
  std::vector<int64_t> starts(view.n * K * 3);
  for (int64_t i = 0; i < view.n * K; ++i) {
    starts[3 * i + 0] = int_cube_start<double>(cp[3 * i + 0], size.t, view.t);
    starts[3 * i + 1] = int_cube_start<double>(cp[3 * i + 1], size.h, view.h);
    starts[3 * i + 2] = int_cube_start<double>(cp[3 * i + 2], size.w, view.w);
  }

  const at::ScalarType copy_dtype = normalize ? out_dtype : video.scalar_type();
  at::Tensor out = empty_output({view.n, K, view.c, size.t, size.h, size.w}, video.options().dtype(copy_dtype));
  if (out.numel() == 0) return out.to(out_dtype);

  if (normalize) {
    AT_DISPATCH_V2(
        video.scalar_type(), "crop_cubes_int_cpu", AT_WRAP([&] {
          using in_t = scalar_t;
          AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out_dtype, "crop_cubes_int_cpu_out", [&] {
            normalize_cubes<in_t, scalar_t>(video, view, starts, K, size, mean_v, std_v, out);
          });
        }),
        AT_EXPAND(AT_ALL_TYPES), at::kHalf, at::kBFloat16, AT_EXPAND(AT_BAREBONES_UNSIGNED_TYPES));
    return out;
  }
  AT_DISPATCH_V2(
      video.scalar_type(), "crop_cubes_int_cpu",
      AT_WRAP([&] { copy_cubes<scalar_t>(video, view, starts, K, size, out); }), AT_EXPAND(AT_ALL_TYPES),
      at::kHalf, at::kBFloat16, AT_EXPAND(AT_BAREBONES_UNSIGNED_TYPES));
  // A different out_dtype without normalisation: the same cast the reference applies.
  return out_dtype == copy_dtype ? out : out.to(out_dtype);
}

}  // namespace
}  // namespace cubecrop::cpu

TORCH_LIBRARY_IMPL(cubecrop, CPU, m) {
  m.impl("crop_cubes_int", &cubecrop::cpu::crop_cubes_int_cpu);
}
