"""Policy pi: heat-map soft-argmax in video coordinates, clamping, random centers, the sigmoid option."""
import torch

from adafocus.model.glance import glance_frame_indices, make_glance_input
from adafocus.model import AdaFocusV3
from adafocus.model.config import ModelConfig
from adafocus.model.policy import clamp_centers, glance_grid_coordinates, random_centers, soft_argmax


def test_glance_samples_the_middle_of_each_segment():
    assert glance_frame_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert glance_frame_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert glance_frame_indices(5, 8).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # fewer frames than G: repeats
    video = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 3, 16, 8, 8)
    glance = make_glance_input(video, 4, 4)
    assert glance.shape == (1, 3, 4, 4, 4)
    torch.testing.assert_close(glance[0, 0, :, 0, 0], torch.tensor([2.0, 6.0, 10.0, 14.0]))


def test_a_peaked_heat_map_points_at_its_cell_in_video_coordinates():
    coordinates = glance_grid_coordinates((16, 64, 48), (4, 4, 3))
    heat = torch.full((1, 1, 4, 4, 3), -1e4)
    heat[0, 0, 2, 1, 2] = 0.0
    center = soft_argmax(heat, coordinates)[0, 0]
    # glance frame 2 is video frame 10 (center 10.5); row 1 of 4 over 64 px: 24; column 2 of 3 over 48 px: 40.
    torch.testing.assert_close(center, torch.tensor([10.5, 24.0, 40.0]))
    uniform = soft_argmax(torch.zeros(1, 1, 4, 4, 3), coordinates)[0, 0]
    torch.testing.assert_close(uniform, torch.tensor([8.5, 32.0, 24.0]))


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
