"""GFLOPs (multiply-adds) measured with FlopCounterMode on the real modules: per-frame anchors, the paper
configuration's full path, growth with the exit index, and what inference charges each video."""
import pytest
import torch

from adafocus.model.backbones import build_backbone
from adafocus.inference.cost import module_gmacs
from adafocus.model import AdaFocusV3, FullVideoBaseline
from adafocus.model.config import ModelConfig
from adafocus.inference import EarlyExitRunner, baseline_gmacs, component_gmacs, gmacs_per_exit


def meta_backbone(name):
    with torch.device("meta"):
        return build_backbone(name)


@pytest.mark.parametrize(
    "name, side, expected",
    [("mobilenet_v2", 224, 0.2995), ("resnet50", 128, 1.3346), ("resnet50", 96, 0.7507), ("resnet50", 224, 4.0874)],
)
def test_per_frame_gmacs_match_the_adafocus_figures(name, side, expected):
    assert module_gmacs(meta_backbone(name), (1, 3, side, side)) == pytest.approx(expected, rel=0.01)


def test_paper_tsm_configuration_full_path():
    with torch.device("meta"):
        model = AdaFocusV3(ModelConfig.preset("paper_tsm"))
    shape = (1, 3, 24, 224, 224)
    parts = component_gmacs(model, shape)
    exits = gmacs_per_exit(model, shape)
    assert len(exits) == 3
    # 8 glance frames of MobileNetV2 at 224 + 2 cubes x 12 frames of ResNet-50 at 128 + policy + heads
    # (fC's embeddings included).
    expected = 8 * 0.30 + 24 * 1.33 + parts["policy"] + parts["glance_head"] + 2 * parts["local_head"]
    assert exits[-1] == pytest.approx(expected, rel=0.05)
    assert exits[0] == pytest.approx(2.40, rel=0.01)
    assert exits[2] == pytest.approx(34.84, rel=0.01)
    assert 0.3 < parts["policy"] < 0.5  # the Uni-AdaFocus policy layout costs 0.41 on a 8x7x7 grid
    # The AdaFocus code's figure for one 128x128x12 cube after the glance: 18.84.
    assert exits[1] == pytest.approx(18.84, rel=0.01)


def test_gflops_grow_with_the_exit_index_and_inference_charges_the_exit_taken():
    torch.manual_seed(0)
    model = AdaFocusV3(ModelConfig.preset("tiny", num_cubes=4)).eval()
    video = torch.randn(6, 3, 8, 48, 48)
    exits = gmacs_per_exit(model, video.shape)
    assert all(b > a for a, b in zip(exits, exits[1:]))
    parts = component_gmacs(model, video.shape)
    assert exits[2] - exits[1] == pytest.approx(parts["local_cube"] + parts["local_head"])
    thresholds = torch.tensor([float("-inf"), float("inf"), float("inf"), float("inf"), float("inf")])
    result = EarlyExitRunner(model)(video, thresholds=thresholds)
    assert result.exit_index.tolist() == [1] * 6
    assert result.gflops.tolist() == pytest.approx([exits[1]] * 6)
    # Random cubes run no policy network, so they do not pay for one; the model is not changed.
    assert gmacs_per_exit(model, video.shape, policy="random")[1] == pytest.approx(exits[1] - parts["policy"])
    assert EarlyExitRunner(model, policy="random").gmacs_per_exit(video.shape) == gmacs_per_exit(model, video.shape, "random")
    assert model.config.policy == "learned"


def test_full_video_baseline_costs_fl_on_the_glance_frames_count_not_on_every_frame():
    with torch.device("meta"):
        baseline = FullVideoBaseline(ModelConfig.preset("paper_tsm"))
    gflops = baseline_gmacs(baseline, (1, 3, 24, 224, 224))
    assert gflops == pytest.approx(8 * 0.2995 + 8 * 4.0874, rel=0.01)  # TSM+'s 35.1, not 24 frames of fL
