"""The deep-feature trick (docs/design.md, "Deep-feature trick"): feature_offset_crop, enlarged_window, crop_enlarged."""
import pytest
import torch

import cubecrop
from conftest import Backend, assert_matches
from op_inputs import make_features_case, make_video

STRIDES = [(1, 1, 1), (1, 4, 4), (2, 8, 8), (1, 2, 3)]


def test_equals_crop_cubes_at_the_feature_offset(backend):
    m = 1 if backend.interpreted else 3
    features, centers, origin, stride = make_features_case(m, 2, (2, 3, 3), generator=torch.Generator().manual_seed(0))
    features, centers, origin = (x.to(backend.device) for x in (features, centers, origin))
    out = cubecrop.feature_offset_crop(features, centers, origin, stride.tolist(), backend=backend.name)
    offsets = (centers - origin) / stride.to(backend.device)
    expected = cubecrop.crop_cubes(features, offsets.unsqueeze(1), (2, 3, 3), backend="reference").squeeze(1)
    assert out.shape == (m, 2, 2, 3, 3)
    assert_matches(out, expected, 1e-10, "feature_offset_crop")


def test_centre_gradient_matches_finite_differences(backend):
    m = 1 if backend.interpreted else 2
    features, centers, origin, stride = make_features_case(m, 3, (2, 2, 3), generator=torch.Generator().manual_seed(1))
    features, centers, origin = (x.to(backend.device) for x in (features, centers, origin))
    weights = torch.randn(m, 3, 2, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).to(backend.device)

    def loss(c):
        out = cubecrop.feature_offset_crop(features, c, origin, stride.tolist(), backend=backend.name)
        return (out * weights).sum()

    c = centers.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(c), c)
    eps = 1e-6  # px; the offsets are >= 0.01 cells from a tap change (make_features_case)
    numeric = torch.zeros_like(centers)
    for i in range(m):
        for axis in range(3):
            step = torch.zeros_like(centers)
            step[i, axis] = eps
            numeric[i, axis] = (loss(centers + step) - loss(centers - step)) / (2 * eps)
    assert_matches(grad, numeric, 1e-6, "centre gradient vs finite differences")
    assert grad.abs().sum() > 0


def test_gradients_reach_features_and_not_origin(backend):
    features, centers, origin, stride = make_features_case(1, 2, (1, 2, 2), generator=torch.Generator().manual_seed(3))
    features = features.to(backend.device).requires_grad_()
    centers = centers.to(backend.device).requires_grad_()
    origin = origin.to(backend.device).requires_grad_()
    cubecrop.feature_offset_crop(features, centers, origin, stride.tolist(), backend=backend.name).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert centers.grad is not None
    assert origin.grad is None, "the enlarged crop's origin is integer data, not a learnable input"


@pytest.mark.parametrize("stride", STRIDES, ids=str)
def test_enlarged_window_keeps_the_offset_in_one_cell(stride):
    cube = [s * n for s, n in zip(stride, (3, 2, 2))]  # a multiple of the stride per axis
    video_size = (12, 40, 37)
    gen = torch.Generator().manual_seed(sum(stride))
    low = torch.tensor(cube, dtype=torch.float64) / 2
    high = torch.tensor(video_size, dtype=torch.float64) - low
    centers = low + torch.rand(200, 3, dtype=torch.float64, generator=gen) * (high - low)
    centers = torch.cat([centers, low[None], high[None], torch.stack([low, high]).T[[0, 1, 2], [0, 1, 0]][None]])
    window = cubecrop.enlarged_window(centers, cube, stride, video_size)
    sizes = torch.tensor(window.size, dtype=torch.float64)
    assert window.size == tuple(d + s for d, s in zip(cube, stride))
    assert window.origin.dtype == torch.int64
    # The window lies inside the video ...
    assert (window.origin >= 0).all() and (window.origin + sizes <= torch.tensor(video_size)).all()
    # ... and the cube's start in feature cells, (c - origin - D/2) / s, lies in [0, 1].
    s = torch.tensor(stride, dtype=torch.float64)
    offset = (centers - window.origin - low) / s
    assert (offset >= 0).all() and (offset <= 1).all(), f"offsets out of [0, 1]: {offset.min()}, {offset.max()}"
    # Time with stride 1 starts at floor(c - D/2); space at round(c - (D + s)/2), before clamping.
    unclamped = torch.floor(centers - (low * 2 + s) / 2 + 0.5)
    inside = (unclamped >= 0) & (unclamped + sizes <= torch.tensor(video_size))
    assert torch.equal(window.origin[inside], unclamped[inside].long())
    if stride[0] == 1:
        floor_t = torch.floor(centers[:, 0] - low[0])
        assert torch.equal(window.origin[:, 0][inside[:, 0]], floor_t[inside[:, 0]].long())


def test_enlarged_window_clamps_to_the_video():
    cube, stride, video_size = (4, 8, 8), (1, 4, 4), (8, 32, 32)
    centers = torch.tensor([[-100.0, -100.0, -100.0], [100.0, 100.0, 100.0], [0.0, 31.9, 0.2]], dtype=torch.float64)
    window = cubecrop.enlarged_window(centers, cube, stride, video_size)
    assert window.origin.tolist() == [[0, 0, 0], [3, 20, 20], [0, 20, 0]]


def test_crop_enlarged_starts_at_the_origin(backend):
    n, k = (1, 2) if backend.interpreted else (2, 3)
    video = make_video((n, 3, 8, 20, 18), torch.float32, backend.device, generator=torch.Generator().manual_seed(4))
    centers = torch.rand(n * k, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    centers = (centers * torch.tensor([8.0, 20.0, 18.0], dtype=torch.float64)).to(backend.device)
    window = cubecrop.enlarged_window(centers, (2, 8, 8), (1, 4, 4), (8, 20, 18))
    crops = cubecrop.crop_enlarged(video, window, backend=backend.name)
    assert crops.shape == (n, k, 3, 3, 12, 12)
    for i, (t, y, x) in enumerate(window.origin.tolist()):
        b, j = divmod(i, k)
        torch.testing.assert_close(crops[b, j], video[b, :, t : t + 3, y : y + 12, x : x + 12], rtol=0, atol=0)


def test_identity_features_recover_the_pixel_crop(backend):
    # With fL = identity (stride 1), cropping the enlarged window's "features" at the
    # offset must equal the differentiable pixel crop: the trick is exact, values and
    # centre gradients, for every centre inside [D/2, E - D/2].
    n, k = (1, 2) if backend.interpreted else (2, 2)
    cube, video_size = (2, 5, 4), (6, 11, 9)
    video = make_video((n, 2, *video_size), torch.float64, backend.device, generator=torch.Generator().manual_seed(6))
    low = torch.tensor(cube, dtype=torch.float64) / 2
    high = torch.tensor(video_size, dtype=torch.float64) - low
    centers = low + torch.rand(n * k, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * (high - low)
    centers = centers.to(backend.device)
    window = cubecrop.enlarged_window(centers, cube, 1, video_size)
    enlarged = cubecrop.crop_enlarged(video, window, backend=backend.name).flatten(0, 1)  # (N K, C, D + 1)

    c1 = centers.clone().requires_grad_()
    trick = cubecrop.feature_offset_crop(enlarged, c1, window.origin, 1, backend=backend.name)
    c2 = centers.clone().requires_grad_()
    pixels = cubecrop.crop_cubes(video, c2.view(n, k, 3), cube, backend=backend.name).flatten(0, 1)
    assert_matches(trick, pixels, 1e-10, "values")
    weights = torch.randn(trick.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).to(backend.device)
    (g1,) = torch.autograd.grad((trick * weights).sum(), c1)
    (g2,) = torch.autograd.grad((pixels * weights).sum(), c2)
    assert_matches(g1, g2, 1e-10, "centre gradients")


def test_compile_fullgraph(backend):
    # aot_eager traces the backward too (a superset of the "eager" compiler's checks).
    # The training step of the trick: enlarged window -> integer crop -> (fL) -> offset crop.
    n, k = (1, 1) if backend.interpreted else (2, 2)
    video = make_video((n, 2, 6, 16, 16), torch.float32, backend.device, generator=torch.Generator().manual_seed(9))
    centers = torch.tensor([[3.2, 7.7, 8.1], [2.6, 5.3, 10.9]]).repeat(2, 1)[: n * k].to(backend.device)

    def step(video, centers):
        window = cubecrop.enlarged_window(centers, (2, 8, 8), (1, 4, 4), (6, 16, 16))
        crops = cubecrop.crop_enlarged(video, window, backend=backend.name).flatten(0, 1)
        features = torch.nn.functional.avg_pool3d(crops, (1, 4, 4))  # a stand-in fL: stride (1, 4, 4)
        cubes = cubecrop.feature_offset_crop(features, centers, window.origin, (1, 4, 4), backend=backend.name)
        return cubes.square().sum()

    results = []
    for fn in (step, torch.compile(step, fullgraph=True, backend="aot_eager")):
        torch._dynamo.reset()
        c = centers.clone().requires_grad_()
        loss = fn(video, c)
        (grad,) = torch.autograd.grad(loss, c)
        results.append((loss, grad))
    torch.testing.assert_close(results[1], results[0], rtol=1e-5, atol=1e-5)
    assert results[0][1].abs().sum() > 0


def _edge_case(edge: str, backend):
    """Centres whose cube starts exactly at feature offset 0 or 1 (the window's edges) on every axis."""
    cells, stride = (2, 2, 3), (1.0, 4.0, 4.0)
    gen = torch.Generator().manual_seed(10)
    features = make_video((1, 2, *(c + 1 for c in cells)), torch.float64, generator=gen).to(backend.device)
    weights = torch.randn(1, 2, *cells, dtype=torch.float64, generator=gen).to(backend.device)
    origin = torch.tensor([[3.0, 8.0, 12.0]], dtype=torch.float64, device=backend.device)
    start = 0.0 if edge == "lower" else 1.0  # the cube's first cell, in cells from the window's start
    offset = torch.tensor([[c / 2 + start for c in cells]], dtype=torch.float64, device=backend.device)
    centers = origin + offset * torch.tensor(stride, dtype=torch.float64, device=backend.device)

    def loss(c):
        return (cubecrop.feature_offset_crop(features, c, origin, stride, backend=backend.name) * weights).sum()

    return centers, stride, loss


# The upper edge is one-sided: the window has no cell beyond it, so the derivative must be
# the one from inside (docs/ops.md, "Integer starts"); every backend takes the cell below.
def _check_edge_gradient(backend, edge):
    centers, stride, loss = _edge_case(edge, backend)
    c = centers.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(c), c)
    # Along one axis the crop is linear inside a cell, so a one-sided difference from
    # inside the window is exact up to rounding (a quarter cell step).
    inward = 1.0 if edge == "lower" else -1.0
    for axis in range(3):
        step = torch.zeros_like(centers)
        step[0, axis] = inward * stride[axis] / 4
        numeric = (loss(centers + step) - loss(centers)) / (step[0, axis])
        assert_matches(grad[0, axis], numeric, 1e-9, f"{edge} edge, axis {axis}: autograd vs one-sided difference from inside")


@pytest.mark.parametrize("edge", ["lower", "upper"])
def test_centre_gradient_at_the_window_edges(backend, edge):
    _check_edge_gradient(backend, edge)


@pytest.mark.parametrize("edge", ["lower", "upper"])
def test_reference_centre_gradient_at_the_window_edges(edge):
    _check_edge_gradient(Backend("reference", "cpu"), edge)


def test_reference_upper_edge_keeps_the_values():
    # Taking the cell below with frac 1 reads the same taps with the same weights: at start 1
    # (stride 1, origin 0) the cube is exactly the window's last cells.
    features = torch.arange(2 * 3 * 3 * 4, dtype=torch.float64).view(1, 2, 3, 3, 4)
    centers = torch.tensor([[2.0, 2.0, 2.5]], dtype=torch.float64)  # cells (2, 2, 3) / 2 + 1
    out = cubecrop.feature_offset_crop(features, centers, torch.zeros(1, 3), 1, backend="reference")
    assert torch.equal(out, features[:, :, 1:, 1:, 1:])
