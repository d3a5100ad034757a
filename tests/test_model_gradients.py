"""Where the gradients go: the policy learns through the crop (deep-feature or pixel), never trains fG,
learns nothing with random cubes; and the deep-feature center gradient points at the evidence."""
import pytest
import torch
import torch.nn.functional as F

from adafocus.model.local import LocalEncoder
from adafocus.model import AdaFocusV3
from adafocus.model.config import ModelConfig


def small_model(**overrides) -> AdaFocusV3:
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", num_cubes=2, policy_channels=16, local=dict(tiny_channels=(8, 16, 16)), **overrides)
    return AdaFocusV3(config)


def grads(module) -> list:
    return [p.grad for p in module.parameters()]


def total(gradients) -> float:
    return sum(float(g.abs().sum()) for g in gradients if g is not None)


VIDEO = dict(size=(3, 3, 8, 48, 48))


@pytest.mark.parametrize("crop_gradient", ["deep_feature", "pixel"])
def test_policy_learns_through_the_crop(crop_gradient):
    model = small_model(crop_gradient=crop_gradient)
    out = model(torch.randn(*VIDEO["size"]))
    model.loss(out, torch.tensor([0, 1, 2])).backward()
    assert total(grads(model.policy.head)) > 0
    assert total(grads(model.policy.trunk)) > 0
    assert all(g is not None for g in grads(model.glance))  # fG trains through the exit heads


@pytest.mark.parametrize("policy, crop_gradient", [("learned", "deep_feature"), ("learned", "pixel"),
                                                   ("learned_t", "deep_feature"), ("learned_xy", "deep_feature")])
def test_policy_path_never_reaches_the_glance_encoder(policy, crop_gradient):
    model = small_model(crop_gradient=crop_gradient)
    out = model(torch.randn(*VIDEO["size"]), policy=policy)
    out.centers.sum().backward()  # only the policy path
    assert total(grads(model.policy)) > 0
    assert all(g is None for g in grads(model.glance))


def test_random_cubes_give_the_policy_nothing():
    model = small_model()
    out = model(torch.randn(*VIDEO["size"]), policy="random")
    model.loss(out, torch.tensor([0, 1, 2])).backward()
    assert all(g is None for g in grads(model.policy))
    assert total(grads(model.local)) > 0


@pytest.mark.parametrize("policy, learned_axes", [("learned_t", [0]), ("learned_xy", [1, 2])])
def test_one_axis_policies_learn_only_their_axes(policy, learned_axes):
    model = small_model()
    out = model(torch.randn(*VIDEO["size"]), policy=policy)
    random_axes = [a for a in range(3) if a not in learned_axes]
    out.centers[..., random_axes].sum().backward(retain_graph=True)
    assert total(grads(model.policy)) == 0
    out.centers[..., learned_axes].sum().backward()
    assert total(grads(model.policy)) > 0


# ---- the deep-feature gradient points toward the evidence (docs/design.md, "Deep-feature trick") ----------------

CLASSES, SIDE, OBJECT = 4, 48, 16


def digit_videos(n: int, seed: int):
    """Two-frame videos of noise with one red, 2x-upscaled 8x8 handwritten digit (the label) somewhere.

    Returns video (n, 3, 2, SIDE, SIDE), labels (n,), object centers (n, 2) as (y, x) pixels.
    The object center stays >= 6 px + half a cube from the border, so a cube 6 px off it is inside.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    video = 0.3 * torch.randn(n, 3, 2, SIDE, SIDE, generator=generator)
    corner = torch.randint(10, SIDE - OBJECT - 10 + 1, (n, 2), generator=generator)
    for i in range(n):
        images = digits.images[digits.target == int(labels[i])]
        image = torch.tensor(images[int(torch.randint(0, 60, (1,), generator=generator))], dtype=torch.float32) / 16
        big = image.repeat_interleave(2, 0).repeat_interleave(2, 1)
        y, x = corner[i].tolist()
        video[i, 0, :, y : y + OBJECT, x : x + OBJECT] += 2 * big
    return video, labels, corner.float() + OBJECT / 2


def frame_centers(yx: torch.Tensor) -> torch.Tensor:
    """(n, 2) spatial centers -> (n, 1, 3) cube centers on frame 0 (t = 1.0: the two-frame enlarged window)."""
    return torch.cat((torch.ones(yx.shape[0], 1), yx), dim=1).unsqueeze(1)


def test_deep_feature_gradient_points_toward_the_object():
    torch.manual_seed(0)
    config = ModelConfig(local=dict(tiny_channels=(16, 32), tiny_stride=4), cube_size=(1, 24, 24))
    local, head = LocalEncoder(config), torch.nn.Linear(32, CLASSES)
    optimiser = torch.optim.Adam([*local.parameters(), *head.parameters()], lr=3e-3)
    video, labels, centers = digit_videos(512, seed=1)
    generator = torch.Generator().manual_seed(3)
    for _ in range(120):  # a few seconds: fL learns to read the digit in cubes near it
        batch = torch.randint(0, 512, (32,), generator=generator)
        jitter = torch.randint(-6, 7, (32, 2), generator=generator).float()
        cubes = frame_centers((centers[batch] + jitter).clamp(12, SIDE - 12))
        loss = F.cross_entropy(head(local(video[batch], cubes, crop="integer")[:, 0]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    local.eval()

    video, labels, centers = digit_videos(200, seed=2)
    with torch.no_grad():
        on_object = head(local(video, frame_centers(centers), crop="integer")[:, 0])
    assert float((on_object.argmax(1) == labels).float().mean()) > 0.9, "fL did not learn the task"

    # Each cube 6 px off its object along y or x.
    generator = torch.Generator().manual_seed(4)
    axis = torch.randint(0, 2, (200,), generator=generator)
    offset = torch.zeros(200, 2)
    offset[torch.arange(200), axis] = 6.0 * (torch.randint(0, 2, (200,), generator=generator) * 2 - 1)
    toward = {}
    for crop in ("deep_feature", "pixel"):
        cubes = frame_centers(centers + offset).requires_grad_(True)
        loss = F.cross_entropy(head(local(video, cubes, crop=crop)[:, 0]), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, cubes)
        # Gradient descent moves the center by -gradient; the object lies along -offset.
        toward[crop] = float(((gradient[:, 0, 1:] * offset).sum(1) > 0).float().mean())
    assert toward["deep_feature"] >= 0.75, toward
    assert toward["deep_feature"] > toward["pixel"], toward
