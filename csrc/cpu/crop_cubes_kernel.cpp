// CPU kernel of cubecrop::crop_cubes (trilinear cube crop); its backward is in
// crop_cubes_backward_kernel.cpp.
//
// One parallel unit is one output plane (n, k, c, t_out). Each output row blends
// 4 input window rows (2 t taps x 2 y taps, Dw + 1 values each) with the cube's
// shared tap_weights; the x blend is the same branch-free loop for every row
// (window_row handles borders, strides and half types).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>


#include "cpu/cpu_common.h"

namespace cubecrop::cpu {
namespace {

// out[x] = lerp over x of sum_r weight[r] * rows[r][x .. x + 1], x in [0, width).
// Each row holds width + 1 values.
template <typename scalar_t, typename acc_t>
void blend_window_rows(const acc_t* const* rows, const acc_t* weight, int count, acc_t ax, int64_t width,
                       acc_t* __restrict__ tmp, scalar_t* __restrict__ out) {
  if (count == 4) {
    const acc_t* __restrict__ r0 = rows[0];
    const acc_t* __restrict__ r1 = rows[1];
    const acc_t* __restrict__ r2 = rows[2];
    const acc_t* __restrict__ r3 = rows[3];
    const acc_t w0 = weight[0], w1 = weight[1], w2 = weight[2], w3 = weight[3];
    for (int64_t x = 0; x < width; ++x) {
      const acc_t lo = w0 * r0[x] + w1 * r1[x] + w2 * r2[x] + w3 * r3[x];
      const acc_t hi = w0 * r0[x + 1] + w1 * r1[x + 1] + w2 * r2[x + 1] + w3 * r3[x + 1];
      out[x] = static_cast<scalar_t>(lerp(lo, hi, ax));
    }
    return;
  }
  // Fewer rows: some taps read zero padding (or the cube is entirely outside).
  for (int64_t x = 0; x <= width; ++x) tmp[x] = acc_t(0);
  for (int r = 0; r < count; ++r) {
    const acc_t* __restrict__ row = rows[r];
    const acc_t w = weight[r];
    for (int64_t x = 0; x <= width; ++x) tmp[x] += w * row[x];
  }
  for (int64_t x = 0; x < width; ++x) out[x] = static_cast<scalar_t>(lerp(tmp[x], tmp[x + 1], ax));
}

// The interior case (every tap inside the video, unit W stride): the 4 window
// rows are read in place, converted on the fly for half types.
template <typename scalar_t, typename acc_t>
void blend_rows_in_place(const scalar_t* __restrict__ r0, const scalar_t* __restrict__ r1,
                         const scalar_t* __restrict__ r2, const scalar_t* __restrict__ r3, const acc_t w[4], acc_t ax,
                         int64_t width, scalar_t* __restrict__ out) {
  const acc_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t x = 0; x < width; ++x) {
    const acc_t lo = w0 * acc_t(r0[x]) + w1 * acc_t(r1[x]) + w2 * acc_t(r2[x]) + w3 * acc_t(r3[x]);
    const acc_t hi = w0 * acc_t(r0[x + 1]) + w1 * acc_t(r1[x + 1]) + w2 * acc_t(r2[x + 1]) + w3 * acc_t(r3[x + 1]);
    out[x] = static_cast<scalar_t>(lerp(lo, hi, ax));
  }
}

template <typename scalar_t>
void crop_cubes_forward(const at::Tensor& video, const at::Tensor& centers, CubeSize size, int64_t padding_mode,
                        at::Tensor& out) {
  using acc_t = acc_type<scalar_t>;
  const int64_t N = video.size(0), C = video.size(1), T = video.size(2), H = video.size(3), W = video.size(4);
  const int64_t K = centers.size(1);
  const auto [sn, sc, st, sh, sw] = video_strides(video);
  const scalar_t* vp = video.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();

  const std::vector<CubeTaps<acc_t>> taps = all_cube_taps<acc_t>(video, centers, size);

  const int64_t row_len = size.w + 1;
  const int64_t planes = N * K * C * size.t;
  at::parallel_for(0, planes, grain_for(size.h * size.w), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scratch(5 * row_len);  // 4 window rows + the blend buffer
    // Plane p = ((n * K + k) * C + c) * Dt + t_out, stepped as counters (no divisions per plane).
    int64_t t_out = begin % size.t, c = (begin / size.t) % C, nk = begin / (size.t * C);
    for (int64_t p = begin; p < end; ++p, ++t_out) {
      if (t_out == size.t) {
        t_out = 0;
        if (++c == C) {
          c = 0;
          ++nk;
        }
      }
      const int64_t n = nk / K;
      const CubeTaps<acc_t>& cube = taps[nk];
      acc_t w[4];
      tap_weights<acc_t>(cube.t.frac, cube.y.frac, w);
      scalar_t* out_plane = op + p * size.h * size.w;
      if (cube.inside && sw == 1) {
        const scalar_t* f0 = vp + n * sn + c * sc + (cube.t.start + t_out) * st + cube.y.start * sh + cube.x.start;
        const scalar_t* f1 = f0 + st;
        for (int64_t y_out = 0; y_out < size.h; ++y_out) {
          const scalar_t* r0 = f0 + y_out * sh;
          const scalar_t* r2 = f1 + y_out * sh;
          blend_rows_in_place<scalar_t, acc_t>(r0, r0 + sh, r2, r2 + sh, w, cube.x.frac, size.w,
                                               out_plane + y_out * size.w);
        }
        continue;
      }
      int64_t ti[2];
      for (int a = 0; a < 2; ++a) ti[a] = resolve_index(cube.t.start + t_out + a, T, padding_mode);
      const scalar_t* channel = vp + n * sn + c * sc;
      for (int64_t y_out = 0; y_out < size.h; ++y_out) {
        const acc_t* rows[4];
        acc_t weight[4];
        int count = 0;
        for (int a = 0; a < 2; ++a) {
          if (ti[a] < 0) continue;
          for (int b = 0; b < 2; ++b) {
            const int64_t yi = resolve_index(cube.y.start + y_out + b, H, padding_mode);
            if (yi < 0) continue;
            rows[count] = window_row<scalar_t, acc_t>(channel + ti[a] * st + yi * sh, sw, W, cube.x.start, row_len,
                                                      padding_mode, scratch.data() + count * row_len);
            weight[count] = w[2 * a + b];
            ++count;
          }
        }
        blend_window_rows<scalar_t, acc_t>(rows, weight, count, cube.x.frac, size.w, scratch.data() + 4 * row_len,
                                           out_plane + y_out * size.w);
      }
    }
  });
}

at::Tensor crop_cubes_cpu(const at::Tensor& video, const at::Tensor& centers, c10::IntArrayRef size_ref,
                          int64_t padding_mode) {
  const CubeSize size = cube_size(check::crop_inputs(video, centers, size_ref, padding_mode, kCpu, "cpu"));
  const at::Tensor centers_c = centers.contiguous();
  at::Tensor out = empty_output({video.size(0), centers.size(1), video.size(1), size.t, size.h, size.w}, video.options());
  if (out.numel() == 0) return out;  // K = 0, N = 0 or C = 0
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, video.scalar_type(), "crop_cubes_cpu", [&] {
    crop_cubes_forward<scalar_t>(video, centers_c, size, padding_mode, out);
  });
  return out;
}

}  // namespace
}  // namespace cubecrop::cpu

TORCH_LIBRARY_IMPL(cubecrop, CPU, m) {
  m.impl("crop_cubes", &cubecrop::cpu::crop_cubes_cpu);
}
