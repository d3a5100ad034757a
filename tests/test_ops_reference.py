"""The reference (the oracle of every kernel test) against independent formulations.

1. F.grid_sample(align_corners=False, trilinear) with a grid built from the
   convention of docs/design.md ("Coordinate convention"): output voxel i of a cube of size D centred
   at c reads index-space position s_i = c - D/2 + i, i.e. the continuous point
   s_i + 0.5 (voxel j spans [j, j+1)), whose normalised coordinate is
   2 * (s_i + 0.5) / E - 1. Values and both gradients, float64.
2. A per-voxel Python loop written straight from that formula.
3. Hand-computed examples: exact slices, and a linear ramp (which trilinear
   interpolation reproduces exactly).
"""
import itertools
import math
import zlib

import pytest
import torch
import torch.nn.functional as F

from cubecrop import reference
from conftest import assert_matches
from op_inputs import make_centers, make_video, overlapping_centers


def grid_sample_crop(video, centers, size, padding_mode):
    """crop_cubes through F.grid_sample: an independent formulation of the same convention."""
    n, c, t, h, w = video.shape
    k = centers.shape[1]
    axes = []
    for axis, (d, extent) in enumerate(zip(size, (t, h, w))):
        steps = torch.arange(d, dtype=centers.dtype)
        s = centers[..., axis, None] - d / 2 + steps  # (N, K, D): index-space positions
        axes.append(2 * (s + 0.5) / extent - 1)
    gt, gy, gx = axes
    dt, dh, dw = size
    # grid[..., :] is (x, y, t), i.e. (W, H, T) order, as grid_sample expects.
    grid = torch.stack(
        (
            gx[:, :, None, None, :].expand(n, k, dt, dh, dw),
            gy[:, :, None, :, None].expand(n, k, dt, dh, dw),
            gt[:, :, :, None, None].expand(n, k, dt, dh, dw),
        ),
        dim=-1,
    )
    videos = video.unsqueeze(1).expand(n, k, c, t, h, w).reshape(n * k, c, t, h, w)
    out = F.grid_sample(
        videos, grid.reshape(n * k, dt, dh, dw, 3), mode="bilinear", padding_mode=padding_mode, align_corners=False
    )
    return out.reshape(n, k, c, dt, dh, dw)


def loop_crop(video, centers, size, padding_mode):
    """crop_cubes as a per-voxel loop over out[i] = (1 - a) V[f + i] + a V[f + i + 1] (tiny shapes only)."""
    n, c, t, h, w = video.shape
    k = centers.shape[1]
    out = torch.zeros(n, k, c, *size, dtype=torch.float64)
    for b, j in itertools.product(range(n), range(k)):
        taps = []  # per axis: (floor, frac)
        for axis in range(3):
            s = float(centers[b, j, axis]) - size[axis] / 2
            taps.append((math.floor(s), s - math.floor(s)))
        for i in itertools.product(*(range(d) for d in size)):
            value = torch.zeros(c, dtype=torch.float64)
            for corner in itertools.product((0, 1), repeat=3):
                weight, index = 1.0, []
                for axis, extent in enumerate((t, h, w)):
                    f, a = taps[axis]
                    weight *= a if corner[axis] else 1 - a
                    position = f + i[axis] + corner[axis]
                    if padding_mode == "border":
                        position = min(max(position, 0), extent - 1)
                    index.append(position)
                if all(0 <= p < e for p, e in zip(index, (t, h, w))):
                    value += weight * video[b, :, index[0], index[1], index[2]].double()
            out[b, j, :, i[0], i[1], i[2]] = value
    return out


SHAPES = [
    # (video shape, K, size)
    ((2, 3, 5, 7, 6), 3, (2, 3, 4)),
    ((1, 2, 4, 9, 8), 2, (3, 5, 2)),
    ((1, 1, 1, 4, 5), 2, (1, 3, 3)),  # one frame: T has no interpolation to do when centred
]


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("placement", ["inside", "border", "outside", "any"])
@pytest.mark.parametrize("shape,k,size", SHAPES)
def test_reference_matches_grid_sample(shape, k, size, placement, padding_mode):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((shape, placement, padding_mode)).encode()))
    video = make_video(shape, generator=gen).requires_grad_()
    # Keep c - D/2 off integers: both formulations are piecewise linear in c with kinks there.
    centers = make_centers(shape[0], k, shape[2:], size, placement, generator=gen, margin=1e-3).requires_grad_()
    grad_out = torch.randn(shape[0], k, shape[1], *size, dtype=torch.float64, generator=gen)

    ours = reference.crop_cubes(video, centers, size, padding_mode)
    theirs = grid_sample_crop(video, centers, size, padding_mode)
    assert_matches(ours, theirs, 1e-12, "values")
    ours_grads = torch.autograd.grad(ours, (video, centers), grad_out)
    theirs_grads = torch.autograd.grad(theirs, (video, centers), grad_out)
    assert_matches(ours_grads[0], theirs_grads[0], 1e-12, "grad video")
    assert_matches(ours_grads[1], theirs_grads[1], 1e-10, "grad centers")
    if placement == "outside" and padding_mode == "zeros":
        assert not ours.detach().any(), "a cube fully outside must read only zero padding"


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_reference_matches_loop_with_overlapping_cubes(padding_mode):
    gen = torch.Generator().manual_seed(3)
    shape, size = (2, 2, 4, 6, 5), (3, 2, 4)
    video = make_video(shape, generator=gen)
    centers = torch.cat(
        [overlapping_centers(2, 2, shape[2:], size, generator=gen), make_centers(2, 2, shape[2:], size, "border", generator=gen)],
        dim=1,
    )
    assert_matches(reference.crop_cubes(video, centers, size, padding_mode), loop_crop(video, centers, size, padding_mode), 1e-12, "values")


def test_integer_start_is_an_exact_slice():
    gen = torch.Generator().manual_seed(0)
    video = make_video((1, 2, 6, 7, 8), generator=gen)
    size = (3, 4, 2)
    # c - D/2 = (2, 1, 5): odd sizes give half-integer centres.
    centers = torch.tensor([[[2 + 1.5, 1 + 2.0, 5 + 1.0]]], dtype=torch.float64)
    out = reference.crop_cubes(video, centers, size)
    torch.testing.assert_close(out[0, 0], video[0, :, 2:5, 1:5, 5:7], rtol=0, atol=0)


def test_hand_computed_ramp():
    # V[t, y, x] = 100 t + 10 y + x is linear, so trilinear interpolation is exact:
    # out[i, j, l] = 100 (st + i) + 10 (sy + j) + (sx + l) with s = c - D/2, and the
    # centre gradient of sum(out) is (100, 10, 1) times the number of voxels.
    t, y, x = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), torch.arange(7.0), indexing="ij")
    video = (100 * t + 10 * y + x).double()[None, None].requires_grad_()
    size = (2, 3, 2)
    start = torch.tensor([1.25, 0.5, 3.75], dtype=torch.float64)
    centers = (start + torch.tensor(size, dtype=torch.float64) / 2).view(1, 1, 3).requires_grad_()
    out = reference.crop_cubes(video, centers, size)
    ti, yi, xi = torch.meshgrid(*(torch.arange(float(d)) for d in size), indexing="ij")
    expected = 100 * (1.25 + ti) + 10 * (0.5 + yi) + (3.75 + xi)
    torch.testing.assert_close(out[0, 0, 0], expected.double(), rtol=0, atol=1e-12)
    (grad_centers,) = torch.autograd.grad(out.sum(), centers)
    torch.testing.assert_close(grad_centers[0, 0], torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64) * 12)


@pytest.mark.parametrize(
    "padding_mode,expected",
    [
        # V = [1, 2, 3, 4] along x; cube of 3 centred at x = 1.0 starts at -0.5:
        # voxel i = 0.5 V[i-1] + 0.5 V[i], with V[-1] = 0 (zeros) or V[0] (border).
        ("zeros", [0.5, 1.5, 2.5]),
        ("border", [1.0, 1.5, 2.5]),
    ],
)
def test_hand_computed_padding(padding_mode, expected):
    video = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 1, 1, 1, 4)
    centers = torch.tensor([[[0.5, 0.5, 1.0]]], dtype=torch.float64)
    out = reference.crop_cubes(video, centers, (1, 1, 3), padding_mode)
    torch.testing.assert_close(out.flatten(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)


def test_absurd_centres_read_padding():
    # Far-out (finite) centres must neither overflow the integer cast nor read the video.
    video = torch.randn(1, 2, 3, 4, 5, dtype=torch.float64)
    # Finite axes start at integers (t 0, y 0, x 1), so the border cubes are exact slices.
    centers = torch.tensor([[[1e30, 1.0, 2.0], [-1e30, 1.0, 2.0], [1.0, 1.0, 1e300]]], dtype=torch.float64)
    assert not reference.crop_cubes(video, centers, (2, 2, 2), "zeros").any()
    border = reference.crop_cubes(video, centers, (2, 2, 2), "border")
    torch.testing.assert_close(border[0, 0], video[0, :, -1:, 0:2, 1:3].expand(2, 2, 2, 2), rtol=0, atol=0)
    torch.testing.assert_close(border[0, 1], video[0, :, :1, 0:2, 1:3].expand(2, 2, 2, 2), rtol=0, atol=0)
    torch.testing.assert_close(border[0, 2], video[0, :, 0:2, 0:2, -1:].expand(2, 2, 2, 2), rtol=0, atol=0)


def test_grid_sample_formulation_would_catch_a_half_voxel_shift():
    # The oracle of the oracle must be able to fail: a reference off by half a voxel
    # (the align_corners=True / centre-vs-corner confusion) differs from grid_sample.
    gen = torch.Generator().manual_seed(1)
    video = make_video((1, 2, 5, 6, 7), generator=gen)
    centers = make_centers(1, 2, (5, 6, 7), (2, 3, 3), "inside", generator=gen, margin=1e-3)
    shifted = reference.crop_cubes(video, centers + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64), (2, 3, 3))
    with pytest.raises(AssertionError):
        assert_matches(shifted, grid_sample_crop(video, centers, (2, 3, 3), "zeros"), 1e-5, "shifted")
