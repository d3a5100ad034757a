"""Policy pi: heat-map soft-argmax over the valid center range (no dead zones), clamping, random
centers, the sigmoid option."""
import pytest
import torch

from adafocus.model.glance import glance_frame_indices, make_glance_input
from adafocus.model import AdaFocusV3
from adafocus.model.config import ModelConfig
from adafocus.model.policy import center_grid, clamp_centers, heat_map_centers, random_centers, soft_argmax


def test_glance_samples_the_middle_of_each_segment():
    assert glance_frame_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert glance_frame_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert glance_frame_indices(5, 8).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # fewer frames than G: repeats
    video = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 3, 16, 8, 8)
    glance = make_glance_input(video, 4, 4)
    assert glance.shape == (1, 3, 4, 4, 4)
    torch.testing.assert_close(glance[0, 0, :, 0, 0], torch.tensor([2.0, 6.0, 10.0, 14.0]))


def test_the_grid_spans_the_valid_center_range_and_a_peaked_map_points_at_its_cell():
    cube, video = (4, 16, 16), (16, 64, 48)
    t, y, x = center_grid(cube, video, (4, 4, 3))
    # First cell on D/2, last on E - D/2, evenly in between: t in [2, 14], y in [8, 56], x in [8, 40].
    torch.testing.assert_close(t, torch.tensor([2.0, 6.0, 10.0, 14.0]))
    torch.testing.assert_close(y, torch.tensor([8.0, 24.0, 40.0, 56.0]))
    torch.testing.assert_close(x, torch.tensor([8.0, 24.0, 40.0]))
    heat = torch.full((1, 1, 4, 4, 3), -1e4)
    heat[0, 0, 2, 1, 2] = 0.0
    torch.testing.assert_close(heat_map_centers(heat, cube, video)[0, 0], torch.tensor([10.0, 24.0, 40.0]))
    uniform = heat_map_centers(torch.zeros(1, 1, 4, 4, 3), cube, video)[0, 0]
    torch.testing.assert_close(uniform, torch.tensor([8.0, 32.0, 24.0]))
    assert center_grid((16, 16, 16), video, (1, 4, 3))[0].tolist() == [8.0]  # one cell: the middle


# paper_tsm's sizes: 12x128x128 cubes in 24x224x224 clips, an 8x7x7 glance grid. Before the grid was
# spread over [D/2, E - D/2], 4 of 7 rows/columns and 6 of 8 glance frames lay outside it and were clamped.
PAPER_TSM = dict(cube=(12, 128, 128), video=(24, 224, 224), grid=(8, 7, 7))


def test_the_centers_have_a_gradient_for_mass_at_every_grid_cell():
    g, h, w = PAPER_TSM["grid"]
    cells = g * h * w
    heat = torch.zeros(cells, 1, cells)
    heat[torch.arange(cells), 0, torch.arange(cells)] = 8.0  # 88% of the mass on one cell, the rest spread
    heat = heat.view(cells, 1, g, h, w).requires_grad_()
    centers = heat_map_centers(heat, PAPER_TSM["cube"], PAPER_TSM["video"])
    for axis in range(3):
        (gradient,) = torch.autograd.grad(centers[..., axis].sum(), heat, retain_graph=True)
        per_cell = gradient.flatten(1).abs().amax(1)  # row k: the map with its mass on cell k
        assert bool((per_cell > 1e-3).all()), f"axis {axis}: no gradient for mass at cells {torch.nonzero(per_cell <= 1e-3).flatten().tolist()}"


def test_an_interior_center_is_reachable_from_a_map_on_a_corner():
    g, h, w = PAPER_TSM["grid"]
    heat = torch.zeros(1, 1, g, h, w)
    heat[0, 0, 0, 0, 0] = 4.0  # most of the mass on the first frame's top-left cell
    heat.requires_grad_()
    target = torch.tensor([9.3, 70.0, 151.5])  # inside [6, 18] x [64, 160] x [64, 160], between cells
    optimizer = torch.optim.Adam([heat], lr=0.2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = (heat_map_centers(heat, PAPER_TSM["cube"], PAPER_TSM["video"])[0, 0] - target).square().sum()
        loss.backward()
        optimizer.step()
    reached = heat_map_centers(heat.detach(), PAPER_TSM["cube"], PAPER_TSM["video"])[0, 0]
    assert reached.tolist() == pytest.approx(target.tolist(), abs=0.3)


def test_clamp_and_random_centers_keep_cubes_inside():
    centers = torch.tensor([[[0.0, 0.0, 100.0], [15.9, 31.0, 2.0]]])
    clamped = clamp_centers(centers, (4, 16, 16), (16, 32, 32))
    torch.testing.assert_close(clamped, torch.tensor([[[2.0, 8.0, 24.0], [14.0, 24.0, 8.0]]]))
    r = random_centers(500, 3, (4, 16, 16), (16, 32, 32), generator=torch.Generator().manual_seed(0))
    low, high = torch.tensor([2.0, 8.0, 8.0]), torch.tensor([14.0, 24.0, 24.0])
    assert bool((r >= low).all() and (r <= high).all())
    assert bool((r.flatten(0, 1).std(0) > 2).all())  # spread over the whole range


def test_sigmoid_head_option():
    torch.manual_seed(0)
    model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=2, policy_head="sigmoid", policy_channels=8))
    out = model(torch.randn(3, 3, 8, 48, 48))
    assert out.centers.shape == (3, 2, 3)
    assert bool((out.centers[..., 1:] >= 16).all() and (out.centers[..., 1:] <= 32).all())
    model.loss(out, torch.tensor([0, 1, 2])).backward()
    assert model.policy.head.weight.grad.abs().sum() > 0
