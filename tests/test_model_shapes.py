"""AdaFocusV3 model: shapes for both paper settings (tiny backbones), config, TSM, autocast, state dicts."""
import io

import pytest
import torch

from adafocus.model.backbones import build_backbone
from adafocus.model import AdaFocusV3, FullVideoBaseline
from adafocus.model.config import ModelConfig
from adafocus.model.tsm import TemporalShift, insert_temporal_shift, set_segments, temporal_shift
from adafocus.inference import EarlyExitRunner, baseline_gmacs, gmacs_per_exit

TINY = dict(glance=dict(backbone="tiny"), local=dict(backbone="tiny"), policy_channels=16, glance_resolution=16)


def paper_like(setting: str, **overrides) -> ModelConfig:
    """The paper setting's structure (G, M, Dt, TSM) with tiny backbones and small frames."""
    if setting == "paper_tsm":  # 8 glance frames, M = 2 cubes of Dt = 12 frames, TSM in both encoders
        return ModelConfig.preset("paper_tsm", **TINY, cube_size=(12, 16, 16), num_classes=7, **overrides)
    # 16 glance frames, M = 18 frame-wise cubes
    return ModelConfig.preset("paper_long", **TINY, cube_size=(1, 16, 16), num_classes=7, **overrides)


@pytest.mark.parametrize("setting, frames", [("paper_tsm", 16), ("paper_long", 20)])
@pytest.mark.parametrize("policy, crop_gradient", [("learned", "deep_feature"), ("learned", "pixel"), ("random", "deep_feature")])
def test_forward_shapes_and_centers_inside(setting, frames, policy, crop_gradient):
    torch.manual_seed(0)
    config = paper_like(setting, crop_gradient=crop_gradient)
    model = AdaFocusV3(config)
    video = torch.randn(2, 3, frames, 32, 40)
    out = model(video, policy=policy)
    assert len(out.logits) == config.num_cubes + 1
    assert all(logits.shape == (2, 7) for logits in out.logits)
    assert out.centers.shape == (2, config.num_cubes, 3)
    cube = torch.tensor(config.cube_size, dtype=torch.float32)
    extent = torch.tensor([frames, 32, 40], dtype=torch.float32)
    assert bool((out.centers >= cube / 2 - 1e-5).all()) and bool((out.centers <= extent - cube / 2 + 1e-5).all())
    target = torch.zeros(2, 7).index_fill_(1, torch.tensor([1, 3]), 1.0) if config.loss == "bce" else torch.tensor([1, 3])
    loss = model.loss(out, target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("setting, frames", [("paper_tsm", 16), ("paper_long", 20)])
def test_infer_shapes(setting, frames):
    torch.manual_seed(0)
    config = paper_like(setting)
    model = AdaFocusV3(config).eval()
    video = torch.randn(3, 3, frames, 32, 40)
    result = EarlyExitRunner(model)(video, return_all_exits=True)
    assert result.logits.shape == (3, 7)
    assert result.all_logits.shape == (config.num_cubes + 1, 3, 7)
    assert result.exit_index.tolist() == [config.num_cubes] * 3  # default thresholds: no early exit
    assert result.gflops.shape == (3,)
    assert result.centers.shape == (3, config.num_cubes, 3)


def test_loss_is_sum_of_per_exit_cross_entropies():
    torch.manual_seed(0)
    model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=2))
    out = model(torch.randn(2, 3, 8, 48, 48))
    target = torch.tensor([4, 9])
    expected = sum(torch.nn.functional.cross_entropy(logits, target) for logits in out.logits)
    torch.testing.assert_close(model.loss(out, target), expected)


def test_bce_loss_for_multi_hot_targets():
    torch.manual_seed(0)
    model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=1, loss="bce"))
    out = model(torch.randn(2, 3, 8, 48, 48))
    target = torch.tensor([[0, 1, 1, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    expected = sum(torch.nn.functional.binary_cross_entropy_with_logits(l, target) for l in out.logits)
    torch.testing.assert_close(model.loss(out, target), expected)


def test_auxiliary_per_encoder_losses_are_off_by_default_and_add_when_on():
    torch.manual_seed(0)
    video, target = torch.randn(2, 3, 8, 48, 48), torch.tensor([4, 9])
    plain = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=2))
    assert plain(video).aux_logits == [] and not hasattr(plain, "local_aux_head")
    torch.manual_seed(0)
    model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=2, aux_loss_weight=0.5))
    out = model(video)
    glance_aux, local_aux = out.aux_logits
    assert glance_aux.shape == (2, 10) and local_aux.shape == (2, 2, 10)
    exits_only = sum(torch.nn.functional.cross_entropy(logits, target) for logits in out.logits)
    loss = model.loss(out, target)
    assert loss > exits_only
    loss.backward()
    assert model.local_aux_head.weight.grad.abs().sum() > 0


def test_config_round_trip_and_errors():
    config = ModelConfig.preset("paper_tsm", num_classes=5)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.cube_size == (12, 128, 128) and config.glance.tsm and config.local.tsm
    with pytest.raises(ValueError, match="policy"):
        ModelConfig(policy="pixels")
    with pytest.raises(ValueError, match="crop_gradient"):
        ModelConfig(crop_gradient="random")
    with pytest.raises(ValueError, match="mode"):
        ModelConfig.from_dict({"mode": "pixels"})
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"cubes": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="multiples of the local backbone's stride"):
        AdaFocusV3(ModelConfig(cube_size=(1, 30, 32)))
    model = AdaFocusV3(ModelConfig.preset("tiny"))
    with pytest.raises(ValueError, match="5-D"):
        model(torch.randn(3, 8, 48, 48))
    with pytest.raises(ValueError, match="does not fit"):
        model(torch.randn(1, 3, 8, 24, 24))


def test_temporal_shift_moves_one_fold_each_way():
    x = torch.arange(2 * 4 * 8, dtype=torch.float32).view(2 * 4, 8, 1, 1)  # 2 clips of 4 frames, 8 channels
    y = temporal_shift(x, segments=4, fold_div=8).view(2, 4, 8)
    x = x.view(2, 4, 8)
    torch.testing.assert_close(y[:, :-1, 0], x[:, 1:, 0])  # channel 0 from the next frame
    assert bool((y[:, -1, 0] == 0).all())
    torch.testing.assert_close(y[:, 1:, 1], x[:, :-1, 1])  # channel 1 from the previous frame
    assert bool((y[:, 0, 1] == 0).all())
    torch.testing.assert_close(y[:, :, 2:], x[:, :, 2:])
    with pytest.raises(ValueError, match="clips of 3"):
        temporal_shift(torch.zeros(8, 8, 1, 1), segments=3)


def test_temporal_shift_writes_every_element_whatever_the_layout():
    # The output is allocated uninitialised: a freed block of the same size full of 7s is what
    # the allocator likely hands back, so a boundary slab left unwritten shows up as 7s.
    x = torch.randn(3 * 5, 16, 4, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    expected = torch.zeros(3, 5, 16, 4, 6)
    v = x.detach().view(3, 5, 16, 4, 6)
    expected[:, :-1, :2], expected[:, 1:, 2:4], expected[:, :, 4:] = v[:, 1:, :2], v[:, :-1, 2:4], v[:, :, 4:]
    for _ in range(3):
        garbage = torch.full_like(x, 7.0)
        del garbage
        y = temporal_shift(x, segments=5, fold_div=8)
        torch.testing.assert_close(y.view(3, 5, 16, 4, 6), expected, rtol=0, atol=0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    weights = torch.randn_like(y)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    w = weights.view(3, 5, 16, 4, 6)
    expected_grad = torch.zeros(3, 5, 16, 4, 6)
    expected_grad[:, 1:, :2], expected_grad[:, :-1, 2:4], expected_grad[:, :, 4:] = w[:, :-1, :2], w[:, 1:, 2:4], w[:, :, 4:]
    torch.testing.assert_close(grad.view(3, 5, 16, 4, 6), expected_grad, rtol=0, atol=0)


@pytest.mark.parametrize("clips, segments, channels", [(2, 4, 16), (1, 1, 16), (3, 5, 7), (2, 3, 9)])
def test_the_exported_form_of_the_shift_gives_the_same_values(clips, segments, channels, monkeypatch):
    from adafocus.model import tsm

    x = torch.randn(clips * segments, channels, 3, 5)
    eager = temporal_shift(x, segments, fold_div=8)
    concatenate, calls = tsm._shift_by_concatenation, []
    monkeypatch.setattr(tsm, "_shift_by_concatenation", lambda *args: calls.append(args) or concatenate(*args))
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    exported = temporal_shift(x, segments, fold_div=8)
    assert len(calls) == 1, "while exporting, the shift must take its concatenation form"
    assert torch.equal(exported, eager)


@pytest.mark.parametrize("name", ["tiny", "resnet18", "mobilenet_v2"])
def test_tsm_wraps_residual_branches_and_mixes_frames(name):
    with torch.device("meta"):
        meta = build_backbone(name)
    assert insert_temporal_shift(meta.body) > 0
    backbone = build_backbone("tiny", tiny_channels=(8, 8), tiny_stride=2)
    insert_temporal_shift(backbone.body)
    assert any(isinstance(m, TemporalShift) for m in backbone.modules())
    backbone.eval()
    frames = torch.randn(4, 3, 8, 8)
    set_segments(backbone, 4)
    base = backbone(frames)
    changed = frames.clone()
    changed[3] += 1.0  # the last frame changes: with TSM its neighbour's output changes too
    assert not torch.allclose(backbone(changed)[2], base[2])
    set_segments(backbone, 1)  # every frame its own clip: no mixing
    torch.testing.assert_close(backbone(changed)[2], backbone(frames)[2])


def test_autocast_bf16_forward_backward():
    torch.manual_seed(0)
    video = torch.randn(2, 3, 4, 40, 40)
    for crop_gradient in ("deep_feature", "pixel"):
        model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=2, local=dict(tiny_channels=(8, 8, 16)),
                                              crop_gradient=crop_gradient))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(video)
            loss = model.loss(out, torch.tensor([1, 2]))
        assert torch.isfinite(loss)
        model.zero_grad()
        loss.backward()
        assert model.policy.head.weight.grad.abs().sum() > 0
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = EarlyExitRunner(model)(video)
    assert result.logits.shape == (2, 10)


def test_state_dict_round_trip_reproduces_outputs():
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", num_cubes=3, glance=dict(tsm=True), local=dict(tsm=True), cube_size=(2, 32, 32))
    model = AdaFocusV3(config)
    video = torch.randn(2, 3, 8, 48, 48)
    model(video)  # one training step's BN statistics update, so the buffers are not their defaults
    model.eval()
    model.set_thresholds([0.5, 1.0, 1.5, 0.0])
    buffer = io.BytesIO()
    torch.save({"config": config.to_dict(), "model": model.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)
    restored = AdaFocusV3(ModelConfig.from_dict(saved["config"]))
    restored.load_state_dict(saved["model"])
    restored.eval()
    torch.testing.assert_close(restored.exit_thresholds, model.exit_thresholds)
    for a, b in zip(model(video).logits, restored(video).logits):
        torch.testing.assert_close(a, b)
    first, second = EarlyExitRunner(model)(video), EarlyExitRunner(restored)(video)
    torch.testing.assert_close(first.logits, second.logits)
    assert torch.equal(first.exit_index, second.exit_index)


def test_full_video_baseline():
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny")
    baseline = FullVideoBaseline(config)
    video = torch.randn(2, 3, 8, 48, 48)
    logits = baseline(video)
    assert logits.shape == (2, 10)
    baseline.loss(logits, torch.tensor([0, 1])).backward()
    assert baseline.local.encoder.backbone.body.stages[0][0].weight.grad is not None
    model = AdaFocusV3(config)
    # fL on every full frame costs more than fL on M cubes.
    assert baseline_gmacs(baseline, video.shape) > gmacs_per_exit(model, video.shape)[-1]


def test_local_weights_load_from_a_file(tmp_path):
    source = build_backbone("resnet18")
    path = tmp_path / "r18.pth"
    state = {f"module.{k}": v for k, v in source.body.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(3, 512)  # a classifier entry the trunk ignores
    torch.save({"state_dict": state}, path)
    loaded = build_backbone("resnet18", weights=str(path))
    torch.testing.assert_close(loaded.body.layer4[1].conv2.weight, source.body.layer4[1].conv2.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="lacks"):
        build_backbone("resnet18", weights=str(path))


def test_deep_feature_with_a_cube_spanning_the_whole_clip():
    # Dt = T: no room for the one-frame-larger training window; the time axis is edge-padded and
    # the cube's features come from exactly its own frames. The spatial axes still learn.
    torch.manual_seed(0)
    model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=2, cube_size=(8, 32, 32), local=dict(tsm=True)))
    out = model(torch.randn(2, 3, 8, 48, 48))
    assert bool((out.centers[..., 0] == 4.0).all())
    model.loss(out, torch.tensor([1, 2])).backward()
    assert model.policy.head.weight.grad.abs().sum() > 0
