"""Triton kernels of the cube-crop ops (the math of csrc/cubecrop_math.h, in Triton).

Coordinate contract (docs/design.md, "Coordinate convention"), per axis (t, y, x) in tensor order:
output voxel i of a cube of size D centred at c reads position s_i = c - D/2 + i,
    f = floor(c - D/2), a = (c - D/2) - f, out[i] = (1 - a) * V[f + i] + a * V[f + i + 1]
and d out[i] / d c = V[f + i + 1] - V[f + i]. Every voxel of a cube shares (f, a).

Tiling, shared by every kernel: the output of one cube (C, Dt, Dh, Dw) is viewed
as rows (c, i, j) x columns l (the x axis, contiguous in the output). A program
owns one tile of BLOCK_R rows x BLOCK_W columns of one cube; the grid is 1-D:
cube-major, then row tiles, then column tiles. Offsets are computed in int64
from explicit strides, so any input layout (views, channels-last) works.

This file is executed twice (see cubecrop/triton/_loader.py): once with
triton's interpreter switched on (kernels for CPU tensors) and once normally
(compiled kernels for GPU tensors). `INTERPRETED` says which copy this is; the
launch parameters differ: a single configuration under the interpreter, where
multi-config autotuning needs a GPU, and small tiles so tests cover tile edges.
CUBECROP_TRITON_ONE_CONFIG=1 (read when the kernels are loaded) gives the
compiled copy one configuration too: no autotuning, for test runs where every
new cube shape would otherwise benchmark each configuration.
"""
import os

import triton
import triton.language as tl

INTERPRETED = bool(triton.knobs.runtime.interpret)

# Columns of a tile: the next power of two >= Dw, capped. The interpreter copy
# caps lower so modest test cubes already span several column tiles.
MAX_BLOCK_W = 16 if INTERPRETED else 128

ONE_CONFIG = os.environ.get("CUBECROP_TRITON_ONE_CONFIG") == "1"

if INTERPRETED:
    # One config: the autotuner then never benchmarks (benchmarking needs a GPU driver).
    CONFIGS = [triton.Config({"TILE": 256}, num_warps=1)]
elif ONE_CONFIG:
    CONFIGS = [triton.Config({"TILE": 1024}, num_warps=4)]
else:
    # 4 or 8 tile elements per thread. Measured with ptxas for sm_90 (fp32, BLOCK_W=128):
    # the backward kernel needs ~95 registers at 4 elements per thread, ~250 at 8, and
    # spills at 16 (TILE=4096 with 8 warps, or 2048 with 4); the forward spills at 32.
    CONFIGS = [
        triton.Config({"TILE": tile}, num_warps=warps)
        for tile, warps in ((512, 4), (1024, 4), (1024, 8), (2048, 8))
    ]

# Rows per tile are TILE // BLOCK_W, so the smallest TILE bounds the number of
# row tiles; the centre-gradient partials buffer is sized with it.
MIN_TILE = min(config.kwargs["TILE"] for config in CONFIGS)
# The best tile depends on the extents of the cube (not on the video) and on the
# compile-time branches, which change the work per element: padding mode, which
# gradients are computed, the normalisation. (The autotuner adds the tensors' dtypes.)
_CUBE_KEY = ["C", "Dt", "Dh", "Dw"]
FORWARD_KEY = _CUBE_KEY + ["PADDING"]
BACKWARD_KEY = _CUBE_KEY + ["PADDING", "NEED_VIDEO", "NEED_CENTERS"]
INT_KEY = _CUBE_KEY + ["HAS_MEAN", "HAS_STD", "COMPUTE_FP64"]
# Buffers the backward kernel does not overwrite whole: the video gradient
# accumulates (benchmark runs would add up), and a config with larger tiles writes
# fewer partials slots (slots of a smaller-tile benchmark run would otherwise stay
# in the sum). The host zeroes them before the launch; after benchmarking, the
# autotuner zeroes them again (see UntimedResets).
BACKWARD_RESET_TO_ZERO = ["grad_video_ptr", "partials_ptr"]


class UntimedResets:
    """The benchmarker of an autotuner with reset_to_zero: no reset inside the timed runs.

    triton's autotuner zeroes the reset_to_zero buffers inside every timed call,
    which for the backward is a memset of the whole video gradient, often longer
    than the kernel. Benchmark runs only need the time, not the sums, so here the
    list is emptied while they run; the autotuner's reset after benchmarking
    (before the real launch) sees the full list again and zeroes the buffers once.
    (torch.compile's inductor tunes these kernels itself and reads the full list.)"""

    def __init__(self, benchmarker=None):
        self.tuner = None  # the Autotuner, set by autotune()
        self.benchmarker = benchmarker  # None: triton's, for the active driver

    def __call__(self, kernel_call, quantiles):
        bench = self.benchmarker or triton.runtime.driver.active.get_benchmarker()
        kept = self.tuner.reset_to_zero
        self.tuner.reset_to_zero = []
        try:
            return bench(kernel_call, quantiles=quantiles)
        finally:
            self.tuner.reset_to_zero = kept


def autotune(configs, key, reset_to_zero=None, benchmarker=None):
    """triton.autotune, with UntimedResets as the benchmarker when buffers need resets."""
    def decorate(fn):
        bench = UntimedResets(benchmarker) if reset_to_zero else None
        tuner = triton.autotune(configs=configs, key=key, reset_to_zero=reset_to_zero, do_bench=bench)(fn)
        if bench is not None:
            bench.tuner = tuner
        return tuner

    return decorate


@triton.jit
def _axis_taps(center, size, extent):
    """(first tap index int64, frac) along one axis; frac has the centre's dtype.

    The clamp keeps absurd centres from overflowing the integer cast; in the
    clamped range every tap misses the input, so values and gradients are
    unchanged (csrc/cubecrop_math.h axis_taps)."""
    s = center - size * 0.5
    s = tl.minimum(tl.maximum(s, -(size + 2.0)), extent + 1.0)
    f = tl.floor(s)
    # Upper-edge rule: a cube ending exactly at the input's edge takes the cell below, frac 1.
    f = tl.where((f == s) & (f + size == extent) & (f >= 1.0), f - 1.0, f)
    return f.to(tl.int64), s - f


@triton.jit
def _cube_center(cube, K, centers_ptr, sc_n, sc_k):
    """(n, k, pointer to the (t, y, x) centre) of flat cube index n * K + k."""
    n = cube // K
    k = cube % K
    return n, k, centers_ptr + n.to(tl.int64) * sc_n + k.to(tl.int64) * sc_k


@triton.jit
def _cube_taps(center, sc_a, Dt, Dh, Dw, T, H, W):
    """_axis_taps along t, y and x for the centre at `center` (axis stride sc_a)."""
    st, at = _axis_taps(tl.load(center), Dt, T)
    sy, ay = _axis_taps(tl.load(center + sc_a), Dh, H)
    sx, ax = _axis_taps(tl.load(center + 2 * sc_a), Dw, W)
    return st, at, sy, ay, sx, ax


@triton.jit
def _scatter_row_taps(row, col0, col1, g, w_ty, wx0, ax, mask, c0, c1):
    """Add g times the weights of one (t, y) tap row's two x taps into the video gradient."""
    tl.atomic_add(row + col0, g * (w_ty * wx0), mask=mask & c0, sem="relaxed")
    tl.atomic_add(row + col1, g * (w_ty * ax), mask=mask & c1, sem="relaxed")


@triton.jit
def _axis_grad_scale(center, size, extent):
    """1 where the centre gradient flows along this axis, 0 where _axis_taps clamped
    the start (as the reference's clamp; csrc/cubecrop_math.h axis_center_grad_scale)."""
    s = center - size * 0.5
    clamped = (s < -(size + 2.0)) | (s > extent + 1.0)
    return tl.where(clamped, 0.0, 1.0).to(center.dtype)


@triton.jit
def _int_start(center, size, extent):
    """Test-time start: floor(clamp(c - D/2, 0, E - D) + 0.5), in the centre's dtype (float64)."""
    s = center - size * 0.5
    s = tl.minimum(tl.maximum(s, 0.0), (extent - size) * 1.0)
    return tl.floor(s + 0.5).to(tl.int64)


@triton.jit
def _resolve(index, extent, PADDING: tl.constexpr):
    """(in-bounds index to address, whether the tap reads the input) for int64 indices.

    zeros (PADDING=0): a tap outside [0, extent) reads 0, so it is masked off;
    border (PADDING=1): it reads the clamped edge voxel. The returned index is
    always inside the input so no address outside the tensor is ever formed."""
    clamped = tl.minimum(tl.maximum(index, 0), extent - 1)
    if PADDING == 0:
        valid = (index >= 0) & (index < extent)
    else:
        valid = index == index
    return clamped, valid


@triton.jit
def _lerp(lo, hi, frac):
    # Exact at frac 0 and 1, as csrc/cubecrop_math.h lerp: integer starts give exact slices.
    return (1.0 - frac) * lo + frac * hi


@triton.jit
def _add(a, b):
    return a + b


# tl.sum and tl.cdiv are themselves @triton.jit functions, compiled or interpreted
# according to TRITON_INTERPRET when triton was first imported, so they do not
# work in both copies of this file (see _loader.py); the kernels avoid them. The
# interpreted copy reduces with triton's own sum combiner, which the interpreter
# recognises and maps to numpy's sum (any other combiner runs element by element
# in Python); the compiled copy with its own.
SUM_COMBINE = tl.standard._sum_combine if INTERPRETED else _add


@triton.jit
def _tile_sum(x):
    return tl.reduce(tl.reduce(x, 1, SUM_COMBINE), 0, SUM_COMBINE)


@triton.jit
def _tile_coords(pid, C, Dt, Dh, Dw, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's cube, tile index within the cube, rows (c, i, j) and columns l."""
    rows = C * Dt * Dh
    row_tiles = (rows + BLOCK_R - 1) // BLOCK_R
    col_tiles = (Dw + BLOCK_W - 1) // BLOCK_W
    tiles_per_cube = row_tiles * col_tiles
    cube = pid // tiles_per_cube
    tile = pid % tiles_per_cube
    r = (tile // col_tiles) * BLOCK_R + tl.arange(0, BLOCK_R)
    col = (tile % col_tiles) * BLOCK_W + tl.arange(0, BLOCK_W)
    row_ok = r < rows
    col_ok = col < Dw
    c = r // (Dt * Dh)
    i = (r // Dh) % Dt
    j = r % Dh
    return cube, tile, r, col, row_ok, col_ok, c, i, j


@triton.jit
def _tile_taps(st, sy, sx, i, j, col, row_ok, col_ok, T, H, W, PADDING: tl.constexpr):
    """Input indices of the 2x2x2 taps of a tile, and their masks (taps reading zero padding are masked)."""
    t0, t0_ok = _resolve(st + i, T, PADDING)
    t1, t1_ok = _resolve(st + i + 1, T, PADDING)
    y0, y0_ok = _resolve(sy + j, H, PADDING)
    y1, y1_ok = _resolve(sy + j + 1, H, PADDING)
    x0, x0_ok = _resolve(sx + col, W, PADDING)
    x1, x1_ok = _resolve(sx + col + 1, W, PADDING)
    in_tile = row_ok[:, None] & col_ok[None, :]
    m00 = in_tile & (t0_ok & y0_ok)[:, None]
    m01 = in_tile & (t0_ok & y1_ok)[:, None]
    m10 = in_tile & (t1_ok & y0_ok)[:, None]
    m11 = in_tile & (t1_ok & y1_ok)[:, None]
    c0 = x0_ok[None, :]
    c1 = x1_ok[None, :]
    return t0, t1, y0, y1, x0, x1, in_tile, m00, m01, m10, m11, c0, c1


@triton.jit
def _load_taps(video_ptr, n, c, sv_n, sv_c, sv_t, sv_h, sv_w,
               t0, t1, y0, y1, x0, x1, m00, m01, m10, m11, c0, c1, acc_like):
    """The 8 tap values of a tile, cast at once to acc_like's dtype: fp16/bf16 never do arithmetic."""
    acc_ty = acc_like.dtype
    base = video_ptr + n.to(tl.int64) * sv_n + c.to(tl.int64) * sv_c
    row00 = (base + t0 * sv_t + y0 * sv_h)[:, None]
    row01 = (base + t0 * sv_t + y1 * sv_h)[:, None]
    row10 = (base + t1 * sv_t + y0 * sv_h)[:, None]
    row11 = (base + t1 * sv_t + y1 * sv_h)[:, None]
    col0 = (x0 * sv_w)[None, :]
    col1 = (x1 * sv_w)[None, :]
    v000 = tl.load(row00 + col0, mask=m00 & c0, other=0).to(acc_ty)
    v001 = tl.load(row00 + col1, mask=m00 & c1, other=0).to(acc_ty)
    v010 = tl.load(row01 + col0, mask=m01 & c0, other=0).to(acc_ty)
    v011 = tl.load(row01 + col1, mask=m01 & c1, other=0).to(acc_ty)
    v100 = tl.load(row10 + col0, mask=m10 & c0, other=0).to(acc_ty)
    v101 = tl.load(row10 + col1, mask=m10 & c1, other=0).to(acc_ty)
    v110 = tl.load(row11 + col0, mask=m11 & c0, other=0).to(acc_ty)
    v111 = tl.load(row11 + col1, mask=m11 & c1, other=0).to(acc_ty)
    return v000, v001, v010, v011, v100, v101, v110, v111


@autotune(configs=CONFIGS, key=FORWARD_KEY)
@triton.jit
def crop_forward_kernel(
    video_ptr, centers_ptr, out_ptr,
    K, C, T, H, W,
    sv_n, sv_c, sv_t, sv_h, sv_w,
    sc_n, sc_k, sc_a,
    Dt, Dh, Dw,
    PADDING: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """out (N, K, C, Dt, Dh, Dw) contiguous = trilinear cubes of video at centers."""
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    cube, tile, r, col, row_ok, col_ok, c, i, j = _tile_coords(
        tl.program_id(0), C, Dt, Dh, Dw, BLOCK_R, BLOCK_W)
    n, k, center = _cube_center(cube, K, centers_ptr, sc_n, sc_k)
    st, at, sy, ay, sx, ax = _cube_taps(center, sc_a, Dt, Dh, Dw, T, H, W)

    t0, t1, y0, y1, x0, x1, in_tile, m00, m01, m10, m11, c0, c1 = _tile_taps(
        st, sy, sx, i, j, col, row_ok, col_ok, T, H, W, PADDING)
    v000, v001, v010, v011, v100, v101, v110, v111 = _load_taps(
        video_ptr, n, c, sv_n, sv_c, sv_t, sv_h, sv_w,
        t0, t1, y0, y1, x0, x1, m00, m01, m10, m11, c0, c1, at)
    lo = _lerp(_lerp(v000, v001, ax), _lerp(v010, v011, ax), ay)
    hi = _lerp(_lerp(v100, v101, ax), _lerp(v110, v111, ax), ay)
    value = _lerp(lo, hi, at)

    out = out_ptr + cube.to(tl.int64) * C * Dt * Dh * Dw + (r.to(tl.int64) * Dw)[:, None] + col[None, :]
    tl.store(out, value.to(out_ptr.dtype.element_ty), mask=in_tile)


@autotune(configs=CONFIGS, key=BACKWARD_KEY, reset_to_zero=BACKWARD_RESET_TO_ZERO)
@triton.jit
def crop_backward_kernel(
    grad_out_ptr, video_ptr, centers_ptr, grad_video_ptr, partials_ptr,
    K, C, T, H, W,
    sg_n, sg_k, sg_c, sg_t, sg_h, sg_w,
    sv_n, sv_c, sv_t, sv_h, sv_w,
    sc_n, sc_k, sc_a,
    sgv_n, sgv_c, sgv_t, sgv_h, sgv_w,
    Dt, Dh, Dw, max_tiles,
    PADDING: tl.constexpr, NEED_VIDEO: tl.constexpr, NEED_CENTERS: tl.constexpr,
    BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """Both gradients of crop_forward_kernel from one read of grad_out.

    grad_video (accumulation dtype, zeroed, strides sgv_*): each output voxel
    scatters grad * w to its 8 taps with atomic adds (taps of neighbouring
    voxels and of overlapping cubes coincide).
    partials (N*K, max_tiles, 3), zeroed: slot (cube, tile) gets this tile's
    share of the centre gradient, sum over its voxels of grad * d out / d (t, y, x);
    max_tiles is the tile count at MIN_TILE, so larger tiles leave slots at 0.
    The caller sums over tiles in a fixed order: the centre gradient needs no atomics."""
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    cube, tile, r, col, row_ok, col_ok, c, i, j = _tile_coords(
        tl.program_id(0), C, Dt, Dh, Dw, BLOCK_R, BLOCK_W)
    n, k, center = _cube_center(cube, K, centers_ptr, sc_n, sc_k)
    st, at, sy, ay, sx, ax = _cube_taps(center, sc_a, Dt, Dh, Dw, T, H, W)
    acc_ty = at.dtype

    t0, t1, y0, y1, x0, x1, in_tile, m00, m01, m10, m11, c0, c1 = _tile_taps(
        st, sy, sx, i, j, col, row_ok, col_ok, T, H, W, PADDING)

    g_rows = (n.to(tl.int64) * sg_n + k.to(tl.int64) * sg_k + c.to(tl.int64) * sg_c
              + i.to(tl.int64) * sg_t + j.to(tl.int64) * sg_h)[:, None]
    g = tl.load(grad_out_ptr + g_rows + (col.to(tl.int64) * sg_w)[None, :], mask=in_tile, other=0).to(acc_ty)

    if NEED_VIDEO:
        # Relaxed atomics: the sums need atomicity only, no ordering with other memory
        # (the default acq_rel adds a fence and a cache invalidation to each).
        base = grad_video_ptr + n.to(tl.int64) * sgv_n + c.to(tl.int64) * sgv_c
        wt0 = 1 - at
        wy0 = 1 - ay
        wx0 = 1 - ax
        col0 = (x0 * sgv_w)[None, :]
        col1 = (x1 * sgv_w)[None, :]
        _scatter_row_taps((base + t0 * sgv_t + y0 * sgv_h)[:, None], col0, col1, g, wt0 * wy0, wx0, ax, m00, c0, c1)
        _scatter_row_taps((base + t0 * sgv_t + y1 * sgv_h)[:, None], col0, col1, g, wt0 * ay, wx0, ax, m01, c0, c1)
        _scatter_row_taps((base + t1 * sgv_t + y0 * sgv_h)[:, None], col0, col1, g, at * wy0, wx0, ax, m10, c0, c1)
        _scatter_row_taps((base + t1 * sgv_t + y1 * sgv_h)[:, None], col0, col1, g, at * ay, wx0, ax, m11, c0, c1)

    if NEED_CENTERS:
        v000, v001, v010, v011, v100, v101, v110, v111 = _load_taps(
            video_ptr, n, c, sv_n, sv_c, sv_t, sv_h, sv_w,
            t0, t1, y0, y1, x0, x1, m00, m01, m10, m11, c0, c1, at)
        # x-lerps and their x-derivatives for the four (t, y) tap rows.
        l00 = _lerp(v000, v001, ax)
        l01 = _lerp(v010, v011, ax)
        l10 = _lerp(v100, v101, ax)
        l11 = _lerp(v110, v111, ax)
        lo = _lerp(l00, l01, ay)
        hi = _lerp(l10, l11, ay)
        d_t = hi - lo
        d_y = _lerp(l01 - l00, l11 - l10, at)
        d_x = _lerp(_lerp(v001 - v000, v011 - v010, ay), _lerp(v101 - v100, v111 - v110, ay), at)
        slot = partials_ptr + (cube.to(tl.int64) * max_tiles + tile) * 3
        tl.store(slot, _tile_sum(g * d_t) * _axis_grad_scale(tl.load(center), Dt, T))
        tl.store(slot + 1, _tile_sum(g * d_y) * _axis_grad_scale(tl.load(center + sc_a), Dh, H))
        tl.store(slot + 2, _tile_sum(g * d_x) * _axis_grad_scale(tl.load(center + 2 * sc_a), Dw, W))


@autotune(configs=CONFIGS, key=INT_KEY)
@triton.jit
def crop_int_kernel(
    video_ptr, centers_ptr, mean_ptr, std_ptr, out_ptr,
    K, C, T, H, W,
    sv_n, sv_c, sv_t, sv_h, sv_w,
    sc_n, sc_k, sc_a,
    Dt, Dh, Dw,
    HAS_MEAN: tl.constexpr, HAS_STD: tl.constexpr, COMPUTE_FP64: tl.constexpr,
    BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """out (N, K, C, Dt, Dh, Dw) contiguous = integer cubes, optionally (x - mean) / std.

    start = floor(clamp(c - D/2, 0, E - D) + 0.5) in float64 (centres are float64),
    as csrc/cubecrop_math.h int_cube_start; the cube always lies inside."""
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    cube, tile, r, col, row_ok, col_ok, c, i, j = _tile_coords(
        tl.program_id(0), C, Dt, Dh, Dw, BLOCK_R, BLOCK_W)
    n, k, center = _cube_center(cube, K, centers_ptr, sc_n, sc_k)
    st = _int_start(tl.load(center), Dt, T)
    sy = _int_start(tl.load(center + sc_a), Dh, H)
    sx = _int_start(tl.load(center + 2 * sc_a), Dw, W)
    in_tile = row_ok[:, None] & col_ok[None, :]
    rows = video_ptr + n.to(tl.int64) * sv_n + c.to(tl.int64) * sv_c + (st + i) * sv_t + (sy + j) * sv_h
    value = tl.load(rows[:, None] + ((sx + col) * sv_w)[None, :], mask=in_tile, other=0)
    if HAS_MEAN or HAS_STD:
        if COMPUTE_FP64:
            value = value.to(tl.float64)
        else:
            value = value.to(tl.float32)
        if HAS_MEAN:
            value = value - tl.load(mean_ptr + c, mask=row_ok, other=0).to(value.dtype)[:, None]
        if HAS_STD:
            value = value / tl.load(std_ptr + c, mask=row_ok, other=1).to(value.dtype)[:, None]
    out = out_ptr + cube.to(tl.int64) * C * Dt * Dh * Dw + (r.to(tl.int64) * Dw)[:, None] + col[None, :]
    tl.store(out, value.to(out_ptr.dtype.element_ty), mask=in_tile)
