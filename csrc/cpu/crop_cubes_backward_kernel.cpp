// CPU kernel of cubecrop::crop_cubes_backward: the video and centre gradients of crop_cubes.
//
// One parallel unit is a block of input frames of one (n, c). For each cube k in
// order, window position j along an axis receives (1 - a) * g[j] + a * g[j - 1]
// (window_gather in cubecrop_math.h), so each frame's gradient is a gather over
// grad_out written by exactly one thread in a fixed order: deterministic, no
// atomics. The centre gradient is computed in the same pass from the same
// grad_out rows: d L / d a = sum over window voxels of V * (the window gradient
// with that axis' weights replaced by their derivatives, tap_weight_derivatives).
// Each unit keeps per-cube partial sums; they are reduced in unit order, so the
// result does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "cpu/cpu_common.h"

namespace cubecrop::cpu {
namespace {

// One window row's gradient inputs: the 4 grad_out rows (t source x y source)
// with their weight and the weight's derivatives along t and y. A source
// outside the cube points at a zero row with zero weights, so the combine
// loop below is the same branch-free loop for every window row.
template <typename acc_t>
struct GradSources {
  const acc_t* rows[4];
  acc_t w[4], dt[4], dy[4];
};

// h[1 + x] = sum_r w[r] * rows[r][x] for x in [0, width), h[0] = h[width + 1] = 0
// (the zero-padded g[-1] and g[D] of window_gather), and likewise for dt, dy.
template <typename acc_t>
void combine_grad_rows(const GradSources<acc_t>& src, int64_t width, bool with_derivatives, acc_t* __restrict__ h,
                       acc_t* __restrict__ h_dt, acc_t* __restrict__ h_dy) {
  const acc_t* __restrict__ g0 = src.rows[0];
  const acc_t* __restrict__ g1 = src.rows[1];
  const acc_t* __restrict__ g2 = src.rows[2];
  const acc_t* __restrict__ g3 = src.rows[3];
  const acc_t w0 = src.w[0], w1 = src.w[1], w2 = src.w[2], w3 = src.w[3];
  h[0] = h[width + 1] = acc_t(0);
  if (!with_derivatives) {
    for (int64_t x = 0; x < width; ++x) h[x + 1] = w0 * g0[x] + w1 * g1[x] + w2 * g2[x] + w3 * g3[x];
    return;
  }
  const acc_t t0 = src.dt[0], t1 = src.dt[1], t2 = src.dt[2], t3 = src.dt[3];
  const acc_t y0 = src.dy[0], y1 = src.dy[1], y2 = src.dy[2], y3 = src.dy[3];
  h_dt[0] = h_dt[width + 1] = h_dy[0] = h_dy[width + 1] = acc_t(0);
  for (int64_t x = 0; x < width; ++x) {
    const acc_t a = g0[x], b = g1[x], c = g2[x], d = g3[x];
    h[x + 1] = w0 * a + w1 * b + w2 * c + w3 * d;
    h_dt[x + 1] = t0 * a + t1 * b + t2 * c + t3 * d;
    h_dy[x + 1] = y0 * a + y1 * b + y2 * c + y3 * d;
  }
}

// Fixed-order partial sums of the centre gradient along (t, y, x): kLanes
// independent float sums per axis (vectorisable), flushed into double once
// per window plane so long cubes keep their precision.
template <typename acc_t>
struct CenterLanes {
  acc_t t[kLanes] = {}, y[kLanes] = {}, x[kLanes] = {};

  void flush_into(double total[3]) {
    total[0] += static_cast<double>(sum_lanes(t));
    total[1] += static_cast<double>(sum_lanes(y));
    total[2] += static_cast<double>(sum_lanes(x));
    for (int l = 0; l < kLanes; ++l) t[l] = y[l] = x[l] = acc_t(0);
  }
};

// Adds one window row's centre-gradient terms V[x] * d(window grad)[x] / d a
// for a = (t, y, x), where the window gradient is R[x] = h[x + 1] + ax * (h[x] - h[x + 1]).
template <typename acc_t>
void add_center_terms(const acc_t* __restrict__ v, const acc_t* __restrict__ h, const acc_t* __restrict__ h_dt,
                      const acc_t* __restrict__ h_dy, acc_t ax, int64_t count, CenterLanes<acc_t>& lanes) {
  acc_t* __restrict__ st = lanes.t;
  acc_t* __restrict__ sy = lanes.y;
  acc_t* __restrict__ sx = lanes.x;
  int64_t x = 0;
  for (; x + kLanes <= count; x += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const int64_t i = x + l;
      st[l] += v[i] * window_gather(h_dt[i + 1], h_dt[i], ax);
      sy[l] += v[i] * window_gather(h_dy[i + 1], h_dy[i], ax);
      sx[l] += v[i] * window_gather_derivative(h[i + 1], h[i]);
    }
  }
  for (int l = 0; x < count; ++x, ++l) {
    st[l] += v[x] * window_gather(h_dt[x + 1], h_dt[x], ax);
    sy[l] += v[x] * window_gather(h_dy[x + 1], h_dy[x], ax);
    sx[l] += v[x] * window_gather_derivative(h[x + 1], h[x]);
  }
}

// Adds the window row gradient R[x] = h[x + 1] + ax * (h[x] - h[x + 1]),
// x in [0, count), into the frame row `dst` (contiguous, `width` long) at x0 + x.
template <typename acc_t>
void scatter_window_row(const acc_t* __restrict__ h, acc_t ax, int64_t count, int64_t x0, int64_t width,
                        int64_t padding_mode, acc_t* __restrict__ dst) {
  if (x0 >= 0 && x0 + count <= width) {
    acc_t* __restrict__ out = dst + x0;
    for (int64_t x = 0; x < count; ++x) out[x] += window_gather(h[x + 1], h[x], ax);
    return;
  }
  // Border clamping sends several window voxels onto one edge voxel: add them in x order.
  for (int64_t x = 0; x < count; ++x) {
    const int64_t xi = resolve_index(x0 + x, width, padding_mode);
    if (xi >= 0) dst[xi] += window_gather(h[x + 1], h[x], ax);
  }
}

// ---- Dense path for small cubes inside the video (the deep-feature trick).
//
// The window gradient is separable: gather along x, then y, then t
// (window_gather per axis). On a padded copy of the cube every pass is one
// flat loop: layout planes p in [0, Dt + 1] (planes 0 and Dt + 1 zero), rows
// r in [0, Dh] (row Dh zero), columns j in [0, Dw] (column Dw zero), element
// (p, r, j) at 1 + (p * (Dh + 1) + r) * (Dw + 1) + j, element 0 zero. Then
// "the previous voxel along x / y / t" is index i - 1 / i - (Dw + 1) /
// i - plane, and it reads a zero exactly where window_gather has g[-1] = 0.
constexpr int64_t kSmallCubeWindow = 8192;

template <typename acc_t>
struct SmallCubeScratch {
  int64_t row = 0, plane = 0, total = 0;
  std::vector<acc_t> g, x, y, dx, ydx, dy, v;

  explicit SmallCubeScratch(CubeSize size) {
    if (size.t == 0) return;
    row = size.w + 1;
    plane = (size.h + 1) * row;
    total = 1 + (size.t + 2) * plane;
    for (auto* buffer : {&g, &x, &y, &dx, &ydx, &dy}) buffer->assign(total, acc_t(0));
    v.assign((size.t + 1) * plane, acc_t(0));
  }
};

// out[i] = (1 - a) * in[i] + a * in[i - back] over the real planes; with a
// derivative output, d[i] = in[i - back] - in[i] too.
template <typename acc_t>
void gather_pass(const acc_t* __restrict__ in, int64_t back, acc_t a, int64_t begin, int64_t end,
                 acc_t* __restrict__ out, acc_t* __restrict__ d) {
  for (int64_t i = begin; i < end; ++i) out[i] = window_gather(in[i], in[i - back], a);
  if (d != nullptr) {
    for (int64_t i = begin; i < end; ++i) d[i] = window_gather_derivative(in[i], in[i - back]);
  }
}

// sum_q v[q] * ((1 - a) * in[q + plane] + a * in[q]) over the window, q in [0, count):
// the t gather fused with the dot product; with kDerivative, its derivative
// in[q] - in[q + plane] instead. kLanes fixed-order lanes.
template <bool kDerivative, typename acc_t>
double window_dot(const acc_t* __restrict__ v, const acc_t* __restrict__ in, int64_t plane, acc_t a, int64_t count) {
  auto term = [&](int64_t i) {
    if constexpr (kDerivative) {
      return window_gather_derivative(in[i + plane], in[i]);
    } else {
      return window_gather(in[i + plane], in[i], a);
    }
  };
  acc_t lanes[kLanes] = {};
  int64_t q = 0;
  for (; q + kLanes <= count; q += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += v[q + l] * term(q + l);
  }
  for (int l = 0; q < count; ++q, ++l) lanes[l] += v[q] * term(q);
  return static_cast<double>(sum_lanes(lanes));
}

// The gradients of one small cube inside the video: adds its window gradient
// into `frame_origin` (the accumulated video gradient at the window's first
// voxel, strides frame_st, frame_sh; null when not needed) and its centre
// gradient sums into sums[3] when need_centers. `video_origin` is the video at
// the window's first voxel (strides st, sh, unit W stride).
template <typename scalar_t, typename acc_t>
void small_cube_gradient(const scalar_t* g_cube, const scalar_t* video_origin, int64_t st, int64_t sh,
                         acc_t* frame_origin, int64_t frame_st, int64_t frame_sh, const CubeTaps<acc_t>& cube,
                         CubeSize size, bool need_centers, SmallCubeScratch<acc_t>& s, double sums[3]) {
  const int64_t row = s.row, plane = s.plane;
  const int64_t window = (size.t + 1) * plane;  // window voxels, in the padded layout of planes 0 .. Dt
  // Copy grad_out into the real planes 1 .. Dt (pads stay zero from construction).
  for (int64_t t = 0; t < size.t; ++t) {
    for (int64_t r = 0; r < size.h; ++r) {
      const scalar_t* src = g_cube + (t * size.h + r) * size.w;
      acc_t* dst = s.g.data() + 1 + (t + 1) * plane + r * row;
      for (int64_t j = 0; j < size.w; ++j) dst[j] = static_cast<acc_t>(src[j]);
    }
  }
  const int64_t real_begin = 1 + plane, real_end = 1 + (size.t + 1) * plane;
  acc_t* dx = need_centers ? s.dx.data() : nullptr;
  gather_pass<acc_t>(s.g.data(), 1, cube.x.frac, real_begin, real_end, s.x.data(), dx);
  acc_t* dy = need_centers ? s.dy.data() : nullptr;
  gather_pass<acc_t>(s.x.data(), row, cube.y.frac, real_begin, real_end, s.y.data(), dy);

  if (frame_origin != nullptr) {
    // Window voxel q = (jt * (Dh + 1) + r) * (Dw + 1) + j: (1 - at) * y[plane jt + 1] + at * y[plane jt].
    const acc_t* y = s.y.data() + 1;
    const acc_t at = cube.t.frac;
    for (int64_t jt = 0; jt <= size.t; ++jt) {
      for (int64_t r = 0; r <= size.h; ++r) {
        const int64_t q = jt * plane + r * row;
        acc_t* __restrict__ dst = frame_origin + jt * frame_st + r * frame_sh;
        const acc_t* __restrict__ lo = y + q;
        const acc_t* __restrict__ hi = y + q + plane;
        for (int64_t j = 0; j < row; ++j) dst[j] += window_gather(hi[j], lo[j], at);
      }
    }
  }
  if (!need_centers) return;
  for (int64_t jt = 0; jt <= size.t; ++jt) {
    for (int64_t r = 0; r <= size.h; ++r) {
      const scalar_t* src = video_origin + jt * st + r * sh;
      acc_t* dst = s.v.data() + jt * plane + r * row;
      for (int64_t j = 0; j < row; ++j) dst[j] = static_cast<acc_t>(src[j]);
    }
  }
  gather_pass<acc_t>(s.dx.data(), row, cube.y.frac, real_begin, real_end, s.ydx.data(), nullptr);
  const acc_t* v = s.v.data();
  // d/d at: window voxel jt gets y[plane jt] - y[plane jt + 1].
  sums[0] += window_dot<true, acc_t>(v, s.y.data() + 1, plane, cube.t.frac, window);
  sums[1] += window_dot<false, acc_t>(v, s.dy.data() + 1, plane, cube.t.frac, window);
  sums[2] += window_dot<false, acc_t>(v, s.ydx.data() + 1, plane, cube.t.frac, window);
}

template <typename scalar_t>
void crop_cubes_backward_kernel(const at::Tensor& grad_out, const at::Tensor& video, const at::Tensor& centers,
                                CubeSize size, int64_t padding_mode, bool need_video, bool need_centers,
                                at::Tensor& grad_video, at::Tensor& grad_centers) {
  using acc_t = acc_type<scalar_t>;
  const int64_t N = video.size(0), C = video.size(1), T = video.size(2), H = video.size(3), W = video.size(4);
  const int64_t K = centers.size(1);
  const auto [sn, sc, st, sh, sw] = video_strides(video);
  const scalar_t* vp = video.const_data_ptr<scalar_t>();
  const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
  scalar_t* gvp = need_video ? grad_video.mutable_data_ptr<scalar_t>() : nullptr;

  const std::vector<CubeTaps<acc_t>> taps = all_cube_taps<acc_t>(video, centers, size);

  // Units: blocks of frames of one (n, c). Whole (n, c) sequences when there
  // are enough of them for the threads, single frames otherwise. The choice
  // depends on the shapes only, so results do not depend on the thread count.
  const int64_t frames_per_unit = N * C >= 256 ? T : 1;
  const int64_t blocks = (T + frames_per_unit - 1) / frames_per_unit;
  const int64_t units = N * C * blocks;
  std::vector<double> partials(need_centers ? units * K * 3 : 0, 0.0);

  const int64_t plane = size.h * size.w;
  const int64_t row_len = size.w + 1;
  // Small cubes (the deep-feature trick's 12x4x4) inside the video take the
  // dense path when a unit holds whole (n, c) sequences: long loops instead of
  // many 4-wide rows. It needs only unit W stride.
  const bool small_cubes = frames_per_unit == T && sw == 1 &&
                           (size.t + 2) * (size.h + 1) * (size.w + 1) <= kSmallCubeWindow;
  at::parallel_for(0, units, grain_for(frames_per_unit * H * W), [&](int64_t begin, int64_t end) {
    constexpr bool same_type = std::is_same_v<scalar_t, acc_t>;
    std::vector<acc_t> frame_acc(need_video && !same_type ? frames_per_unit * H * W : 0);
    SmallCubeScratch<acc_t> small(small_cubes ? size : CubeSize{0, 0, 0});
    std::vector<acc_t> grad_rows(same_type ? 0 : 4 * size.w);
    const std::vector<acc_t> zero_row(size.w, acc_t(0));
    std::vector<acc_t> work(3 * (size.w + 2) + row_len);
    acc_t* h = work.data();
    acc_t* h_dt = h + (size.w + 2);
    acc_t* h_dy = h_dt + (size.w + 2);
    acc_t* v_scratch = h_dy + (size.w + 2);

    for (int64_t u = begin; u < end; ++u) {
      const int64_t nc = u / blocks;
      const int64_t n = nc / C, c = nc % C;
      const int64_t f0 = (u % blocks) * frames_per_unit;
      const int64_t f1 = std::min(T, f0 + frames_per_unit);
      double* unit_partials = need_centers ? partials.data() + u * K * 3 : nullptr;
      const scalar_t* channel = vp + n * sn + c * sc;
      // The unit's frames of the (accumulated) video gradient, zeroed before the cubes add in.
      acc_t* frames = nullptr;
      if (need_video) {
        if constexpr (same_type) {
          frames = gvp + (nc * T + f0) * H * W;
        } else {
          frames = frame_acc.data();
        }
        std::memset(frames, 0, sizeof(acc_t) * (f1 - f0) * H * W);
      }

      for (int64_t k = 0; k < K; ++k) {
        const CubeTaps<acc_t>& cube = taps[n * K + k];
        const acc_t at = cube.t.frac;
        acc_t w[4], dwt[4], dwy[4];
        tap_weights<acc_t>(at, cube.y.frac, w);
        tap_weight_derivatives<acc_t>(at, cube.y.frac, dwt, dwy);
        const scalar_t* g_cube = gp + ((n * K + k) * C + c) * size.t * plane;
        double cube_sums[3] = {0.0, 0.0, 0.0};
        if (small_cubes && cube.inside && f0 == 0 && f1 == T) {
          const int64_t origin = cube.t.start * st + cube.y.start * sh + cube.x.start;
          acc_t* frame_origin = need_video ? frames + (cube.t.start * H + cube.y.start) * W + cube.x.start : nullptr;
          small_cube_gradient<scalar_t, acc_t>(g_cube, channel + origin, st, sh, frame_origin, H * W, W, cube, size,
                                               need_centers, small, cube_sums);
        } else {
          for (int64_t ti = f0; ti < f1; ++ti) {
            acc_t* frame = need_video ? frames + (ti - f0) * H * W : nullptr;
            // Window frames that read frame ti: one for a cube inside the video; with border
            // clamping, every window frame past the edge lands on the edge frame.
            const int64_t jt_first = cube.inside ? std::max<int64_t>(0, ti - cube.t.start) : 0;
            const int64_t jt_last = cube.inside ? std::min<int64_t>(size.t, ti - cube.t.start) : size.t;
            for (int64_t jt = jt_first; jt <= jt_last; ++jt) {
              if (!cube.inside && resolve_index(cube.t.start + jt, T, padding_mode) != ti) continue;
              CenterLanes<acc_t> lanes;
              // Window frame jt gathers output frames jt (weight 1 - at) and jt - 1 (weight at).
              const scalar_t* g_planes[2] = {jt < size.t ? g_cube + jt * plane : nullptr,
                                             jt >= 1 ? g_cube + (jt - 1) * plane : nullptr};
              for (int64_t jy = 0; jy <= size.h; ++jy) {
                const int64_t yi = resolve_index(cube.y.start + jy, H, padding_mode);
                if (yi < 0) continue;
                GradSources<acc_t> src;
                for (int a = 0; a < 2; ++a) {
                  for (int b = 0; b < 2; ++b) {
                    const int r = 2 * a + b;
                    const int64_t y_out = jy - b;
                    if (g_planes[a] == nullptr || y_out < 0 || y_out >= size.h) {
                      src.rows[r] = zero_row.data();
                      src.w[r] = src.dt[r] = src.dy[r] = acc_t(0);
                      continue;
                    }
                    src.rows[r] = as_acc_row<scalar_t, acc_t>(g_planes[a] + y_out * size.w, size.w,
                                                              grad_rows.data() + r * size.w);
                    src.w[r] = w[r];
                    src.dt[r] = dwt[r];
                    src.dy[r] = dwy[r];
                  }
                }
                combine_grad_rows<acc_t>(src, size.w, need_centers, h, h_dt, h_dy);
                if (need_video) {
                  scatter_window_row<acc_t>(h, cube.x.frac, row_len, cube.x.start, W, padding_mode, frame + yi * W);
                }
                if (need_centers) {
                  const acc_t* v = window_row<scalar_t, acc_t>(channel + ti * st + yi * sh, sw, W, cube.x.start,
                                                               row_len, padding_mode, v_scratch);
                  add_center_terms<acc_t>(v, h, h_dt, h_dy, cube.x.frac, row_len, lanes);
                }
              }
              if (need_centers) lanes.flush_into(cube_sums);
            }
          }
        }
        if (need_centers) {
          for (int axis = 0; axis < 3; ++axis) unit_partials[k * 3 + axis] += cube_sums[axis];
        }
      }
      if constexpr (!same_type) {
        if (need_video) {
          scalar_t* dst = gvp + (nc * T + f0) * H * W;
          for (int64_t i = 0; i < (f1 - f0) * H * W; ++i) dst[i] = static_cast<scalar_t>(frames[i]);
        }
      }
    }
  });

  if (need_centers) {
    using center_t = acc_t;
    center_t* gcp = grad_centers.mutable_data_ptr<center_t>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        double total[3] = {0.0, 0.0, 0.0};
        for (int64_t u = n * C * blocks; u < (n + 1) * C * blocks; ++u) {
          for (int axis = 0; axis < 3; ++axis) total[axis] += partials[(u * K + k) * 3 + axis];
        }
        const CubeTaps<acc_t>& cube = taps[n * K + k];
        for (int axis = 0; axis < 3; ++axis) {
          gcp[(n * K + k) * 3 + axis] = static_cast<center_t>(total[axis]) * cube.grad_scale[axis];
        }
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> crop_cubes_backward_cpu(const at::Tensor& grad_out, const at::Tensor& video,
                                                           const at::Tensor& centers, c10::IntArrayRef size_ref,
                                                           int64_t padding_mode, bool need_video_grad,
                                                           bool need_centers_grad) {
  const auto size3 = check::crop_inputs(video, centers, size_ref, padding_mode, kCpu, "cpu");
  const CubeSize size = cube_size(size3);
  check::device(grad_out, "grad_out", kCpu, "cpu");
  check::grad_out(grad_out, video, check::out_shape(video, centers, size3));

  at::Tensor grad_video = need_video_grad ? empty_output(video.sizes(), video.options().memory_format(at::MemoryFormat::Contiguous))
                                          : at::empty({0}, video.options());
  at::Tensor grad_centers = need_centers_grad ? at::empty(centers.sizes(), centers.options().memory_format(at::MemoryFormat::Contiguous))
                                              : at::empty({0}, centers.options());
  if (!need_video_grad && !need_centers_grad) return {grad_video, grad_centers};
  if (grad_out.numel() == 0 || video.numel() == 0) {  // K = 0, N = 0 or C = 0: no cube reads any voxel
    if (need_video_grad) grad_video.zero_();
    if (need_centers_grad) grad_centers.zero_();
    return {grad_video, grad_centers};
  }
  const at::Tensor grad_out_c = grad_out.contiguous();
  const at::Tensor centers_c = centers.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, video.scalar_type(), "crop_cubes_backward_cpu", [&] {
    crop_cubes_backward_kernel<scalar_t>(grad_out_c, video, centers_c, size, padding_mode, need_video_grad,
                                         need_centers_grad, grad_video, grad_centers);
  });
  return {grad_video, grad_centers};
}

}  // namespace
}  // namespace cubecrop::cpu

TORCH_LIBRARY_IMPL(cubecrop, CPU, m) {
  m.impl("crop_cubes_backward", &cubecrop::cpu::crop_cubes_backward_cpu);
}
