"""The paper presets and their config files (docs/design.md, "Presets"), the clip checks they rely on,
and the fair full-video baseline (TSM+: fL on as many frames as the glance)."""
from pathlib import Path

import pytest
import torch

from adafocus.inference import baseline_gmacs
from adafocus.inference.cost import baseline_components
from adafocus.model import AdaFocusV3, FullVideoBaseline, ModelConfig
from adafocus.training.config import RunConfig, load_yaml

TINY = dict(glance=dict(backbone="tiny"), local=dict(backbone="tiny"), policy_channels=8, glance_resolution=16,
            embed_width=16)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_config(name: str) -> RunConfig:
    return RunConfig.from_dict(load_yaml(str(CONFIGS / f"{name}.yaml")))


def test_paper_tsm_lets_two_12_frame_cubes_lie_side_by_side():
    config = run_config("paper_tsm")
    model = config.model_config()
    frames = config.clip_shape()[0]
    assert (model.glance_frames, model.cube_size, model.num_cubes) == (8, (12, 128, 128), 2)
    assert frames >= model.num_cubes * model.cube_size[0]  # two disjoint cubes fit: 13 start frames
    assert model.embed_width > 0 and model.loss == "ce"


@pytest.mark.parametrize("name, side", [("paper_long", 128), ("paper_long_96", 96)])
def test_paper_long_has_a_candidate_frame_per_cube_and_cross_entropy(name, side):
    config = run_config(name)
    model = config.model_config()
    assert model.cube_size == (1, side, side) and model.num_cubes == 18 and model.glance_frames == 16
    assert config.clip_shape()[0] >= model.num_cubes
    assert model.loss == "ce" and not config.data.multi_label  # multi-label (bce) is an opt-in
    assert ModelConfig.preset("paper_long", loss="bce").loss == "bce"


def test_more_frame_wise_cubes_than_candidate_frames_are_refused_naming_the_fields():
    model = ModelConfig.preset("paper_long")
    with pytest.raises(ValueError, match=r"model.num_cubes=18 frame-wise cubes \(model.cube_size\[0\]=1\) need at "
                                         r"least 18 candidate frames, got 16 \(data.num_segments\)"):
        model.check_clip(16, 224, 224, "data.num_segments")
    model.check_clip(18, 224, 224, "data.num_segments")
    ModelConfig.preset("paper_tsm").check_clip(12, 224, 224)  # 12-frame cubes may share frames
    tiny = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=5, cube_size=(1, 16, 16), policy_channels=8))
    with pytest.raises(ValueError, match="model.num_cubes=5 .* got 4 \\(the video's frames\\)"):
        tiny(torch.randn(1, 3, 4, 32, 32))


def test_the_baseline_runs_fl_on_the_glance_frames_count_and_costs_tsm_plus_35_1():
    with torch.device("meta"):
        baseline = FullVideoBaseline(ModelConfig.preset("paper_tsm"))
    shape = (1, 3, 24, 224, 224)
    # The paper's TSM+: MobileNetV2 and ResNet-50 on 8 frames each at 224: 8 x 0.2995 + 8 x 4.0874.
    assert baseline_gmacs(baseline, shape) == pytest.approx(35.1, rel=0.01)
    parts = baseline_components(baseline, shape)
    assert sum(parts.values()) == pytest.approx(baseline_gmacs(baseline, shape))
    assert parts["local"] == pytest.approx(8 * 4.0874, rel=0.01)
    with torch.device("meta"):
        sixteen = FullVideoBaseline(ModelConfig.preset("paper_tsm", baseline_frames=16))
    assert baseline_components(sixteen, shape)["local"] == pytest.approx(16 * 4.0874, rel=0.01)


def test_the_baseline_sees_the_glance_frames_and_refuses_short_videos():
    torch.manual_seed(0)
    baseline = FullVideoBaseline(ModelConfig.preset("tiny", glance_frames=4, **TINY)).eval()
    seen = []
    hook = baseline.local.encoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    video = torch.arange(12.0).view(1, 1, 12, 1, 1).expand(2, 3, 12, 32, 32).contiguous()
    assert baseline(video).shape == (2, baseline.config.num_classes)
    hook.remove()
    # Frames floor((g + 1/2) 12 / 4) = 1, 4, 7, 10: the glance's uniform sampling, at full resolution.
    assert seen[0].shape == (2, 3, 4, 32, 32)
    assert seen[0][0, 0, :, 0, 0].tolist() == [1.0, 4.0, 7.0, 10.0]
    with pytest.raises(ValueError, match="video has 3 frames; the baseline runs fL on 4"):
        baseline(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="baseline_frames must be >= 1"):
        ModelConfig.preset("tiny", baseline_frames=0)
