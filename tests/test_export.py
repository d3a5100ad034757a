"""Deployment: the exported stages equal the PyTorch path, ONNX Runtime takes the same exits,
the paper presets export, and the inference optimisations keep the outputs."""
import json
import platform
import warnings

import pytest
import torch

import adafocus
import cubecrop
from adafocus.inference import EarlyExitRunner, early_exit
from adafocus.inference.export import CubeStage, GlanceStage, export_stages, gather_integer_cubes
from adafocus.inference.optimize import fold_batch_norms, optimize_for_inference

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the optional [onnx] extra")
pytest.importorskip("onnxscript", reason="torch.onnx's exporter needs onnxscript (the [onnx] extra)")


def trained_like(config, frames=16, side=48, scale_heads=40.0):
    """A model with non-default batch-norm statistics and exit heads scaled so entropies differ."""
    torch.manual_seed(0)
    model = adafocus.AdaFocusV3(config)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, frames, side, side))
        for head in model.classifier.heads:
            head.weight.mul_(scale_heads)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny model with frame-wise cubes (de-duplication inside the glance graph), exported once."""
    model = trained_like(adafocus.ModelConfig.preset("tiny", num_cubes=3, local=dict(tiny_channels=(8, 16, 16))))
    folder = tmp_path_factory.mktemp("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_stages(model, (3, 16, 48, 48), str(folder), "onnx")
    return model, folder


def test_gather_crop_is_the_integer_crop():
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(3, 2, 9, 20, 17, generator=generator)
    rows = torch.tensor([2, 0, 0, 1, 2, 1])
    extent = torch.tensor([9.0, 20.0, 17.0])
    # Centres far outside, on the borders and at exact halves (the rounding rule's ties).
    centers = torch.rand(6, 3, generator=generator) * extent * 1.6 - 0.3 * extent
    centers[0] = torch.tensor([1.5, 2.5, 3.5])
    centers[1] = torch.tensor([-100.0, 1e4, 8.5])
    for size in [(1, 4, 4), (3, 7, 5), (9, 20, 17)]:
        got = gather_integer_cubes(video, rows, centers, size)
        want = torch.cat([cubecrop.crop_cubes_int(video[r : r + 1], centers[i : i + 1, None], size)[:, 0]
                          for i, r in enumerate(rows.tolist())])
        assert torch.equal(got, want), size


def test_onnx_stages_match_pytorch_for_any_batch(exported):
    model, folder = exported
    glance = ort.InferenceSession(str(folder / "glance.onnx"))
    cube = ort.InferenceSession(str(folder / "cube.onnx"))
    video = torch.randn(5, 3, 16, 48, 48)  # another batch size than the export's example
    with torch.no_grad():
        want = GlanceStage(model)(video)
    got = glance.run(None, {"video": video.numpy()})
    for name, a, b in zip(("glance", "logits", "centers"), got, want):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=1e-4, msg=name)
    rows = torch.tensor([4, 1])
    width = model.local.out_channels
    local_max = torch.randn(2, width)
    for t in (1, 3):
        inputs = (video, rows, want[2][rows, t - 1], local_max, want[0][rows], torch.tensor(t))
        with torch.no_grad():
            logits, new_max = CubeStage(model)(*inputs)
        out = cube.run(None, dict(zip([i.name for i in cube.get_inputs()], [x.numpy() for x in inputs])))
        torch.testing.assert_close(torch.from_numpy(out[0]), logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.from_numpy(out[1]), new_max, atol=1e-4, rtol=1e-4)


def write_manifest(model, folder, video_shape):
    runner = EarlyExitRunner(model)
    manifest = {"format": "onnx", "files": {"glance": "glance.onnx", "cube": "cube.onnx"},
                "video_shape": list(video_shape), "num_exits": model.num_exits,
                "local_feature_width": model.local.out_channels, "gmacs_per_exit": runner.gmacs_per_exit(video_shape),
                "thresholds": model.exit_thresholds.tolist()}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_onnx_runtime_takes_the_same_exits(exported):
    from adafocus.inference.onnx_runner import OnnxEarlyExitRunner

    model, folder = exported
    write_manifest(model, folder, (3, 16, 48, 48))
    video = torch.randn(24, 3, 16, 48, 48)
    reference = EarlyExitRunner(model)
    every = reference(video, return_all_exits=True)
    entropies = torch.stack([early_exit.entropy(logits) for logits in every.all_logits])
    thresholds = entropies.median(dim=1).values  # about half of the running videos stop at each exit
    want = reference(video, thresholds=thresholds)
    assert len(set(want.exit_index.tolist())) >= 3, "the thresholds should spread the videos over the exits"
    runner = OnnxEarlyExitRunner(str(folder))
    got = runner(video, thresholds=thresholds)
    assert torch.equal(got.exit_index, want.exit_index)
    assert torch.equal(got.logits.argmax(1), want.logits.argmax(1))
    torch.testing.assert_close(got.logits, want.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.gflops, want.gflops)
    again = runner(video, return_all_exits=True)
    torch.testing.assert_close(again.all_logits, every.all_logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="video must be"):
        runner(torch.randn(2, 3, 8, 48, 48))


def test_the_exported_temporal_shift_is_slices_and_concatenations(tmp_path):
    """The eager shift's slice assignments would export as ScatterND and Transpose nodes, each
    a full copy in ONNX Runtime: the TSM graphs hold no more of them than the same model's
    graphs without TSM (the glance graph's one ScatterND places the frame-wise cubes)."""
    onnx = pytest.importorskip("onnx")

    def export(tsm: bool):
        torch.manual_seed(0)
        config = adafocus.ModelConfig.preset("tiny", num_cubes=2, glance=dict(tsm=tsm), local=dict(tsm=tsm))
        model = adafocus.AdaFocusV3(config).eval()
        folder = tmp_path / f"tsm_{tsm}"
        files = export_stages(model, (3, 8, 48, 48), str(folder), "onnx")
        graphs = {stage: onnx.load(str(folder / name)).graph for stage, name in files.items()}
        return model, folder / files["glance"], graphs

    def count(graph, op: str) -> int:
        return sum(node.op_type == op for node in graph.node)

    _, _, plain = export(False)
    model, glance_file, shifted = export(True)
    for stage in ("glance", "cube"):
        assert count(shifted[stage], "Concat") > count(plain[stage], "Concat"), stage  # the shift is in the graph
        for op in ("ScatterND", "Transpose"):
            assert count(shifted[stage], op) == count(plain[stage], op), (stage, op)
    video = torch.randn(2, 3, 8, 48, 48)
    with torch.no_grad():
        want = GlanceStage(model)(video)
    got = ort.InferenceSession(str(glance_file)).run(None, {"video": video.numpy()})
    for a, b in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-5, rtol=1e-4)


def test_onnx_runtime_follows_an_exit_plan_as_the_pytorch_runner_does(exported):
    from adafocus.inference.onnx_runner import OnnxEarlyExitRunner

    model, folder = exported
    write_manifest(model, folder, (3, 16, 48, 48))
    video = torch.randn(8, 3, 16, 48, 48)
    plan = torch.tensor([3, 0, 2, 1, 1, 3, 0, 2])
    want = EarlyExitRunner(model)(video, exit_plan=plan)
    got = OnnxEarlyExitRunner(str(folder), threads=1, allow_spinning=False)(video, exit_plan=plan)
    assert got.exit_index.tolist() == want.exit_index.tolist() == plan.tolist()
    torch.testing.assert_close(got.logits, want.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.gflops, want.gflops)
    with pytest.raises(ValueError, match="exit_plan must have one exit per video"):
        OnnxEarlyExitRunner(str(folder))(video, exit_plan=plan[:3])


def test_torch_export_format_round_trip(tmp_path):
    model = trained_like(adafocus.ModelConfig.preset("tiny", num_cubes=2))
    export_stages(model, (3, 8, 48, 48), str(tmp_path), "torch-export")
    glance = torch.export.load(str(tmp_path / "glance.pt2")).module()
    video = torch.randn(3, 3, 8, 48, 48)
    with torch.no_grad():
        for a, b in zip(glance(video), GlanceStage(model)(video)):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="format must be one of"):
        export_stages(model, (3, 8, 48, 48), str(tmp_path), "tensorrt")


@pytest.mark.parametrize("preset, video_shape", [("paper_tsm", (3, 16, 128, 128)), ("paper_long", (3, 18, 128, 128))])
def test_paper_presets_export_with_random_weights(tmp_path, preset, video_shape):
    torch.manual_seed(0)
    model = adafocus.AdaFocusV3(adafocus.ModelConfig.preset(preset)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = export_stages(model, video_shape, str(tmp_path), "onnx")
    glance = ort.InferenceSession(str(tmp_path / files["glance"]))
    video = torch.randn(1, *video_shape)
    _, logits, centers = glance.run(None, {"video": video.numpy()})
    assert logits.shape == (1, model.config.num_classes) and centers.shape == (1, model.config.num_cubes, 3)
    assert (tmp_path / files["cube"]).stat().st_size > 50e6  # ResNet-50's weights are in it


@pytest.mark.parametrize("local", [dict(tiny_channels=(8, 16, 16)), dict(backbone="resnet18")])
def test_inference_optimisations_keep_the_outputs(local):
    model = trained_like(adafocus.ModelConfig.preset("tiny", num_cubes=2, local=local, cube_size=(1, 32, 32)),
                         frames=8, side=64, scale_heads=1.0)
    video = torch.randn(3, 3, 8, 64, 64)
    want = EarlyExitRunner(model)(video, return_all_exits=True)
    applied = optimize_for_inference(model, glance_memory_format="channels_last", local_memory_format="channels_last")
    assert applied["batch_norms_folded"] > 0
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    got = EarlyExitRunner(model)(video, return_all_exits=True)
    torch.testing.assert_close(got.all_logits, want.all_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.centers, want.centers, atol=1e-4, rtol=1e-4)
    assert fold_batch_norms(model) == 0  # nothing left to fold
    with pytest.raises(ValueError, match="eval mode"):
        optimize_for_inference(model.train())


def test_exit_plan_and_forced_exit_mix():
    from adafocus.apps.bench import exit_plan_for, parse_exit_mix

    model = trained_like(adafocus.ModelConfig.preset("tiny", num_cubes=2), frames=8, scale_heads=1.0)
    plan = exit_plan_for([0.3, 0.7, 0.0], 10)
    assert plan.tolist() == [0] * 3 + [1] * 7
    out = EarlyExitRunner(model)(torch.randn(10, 3, 8, 48, 48), exit_plan=plan)
    assert torch.equal(out.exit_index, plan)
    assert exit_plan_for([0.2, 0.5, 0.3], 8).bincount(minlength=3).tolist() == [2, 4, 2]
    assert parse_exit_mix("0.3, 0.7,0", 3) == [0.3, 0.7, 0.0]
    for bad in ("0.3,0.7", "a,b,c", "0.5,0.6,-0.1", "0.2,0.2,0.2"):
        with pytest.raises(ValueError, match="--exit-mix"):
            parse_exit_mix(bad, 3)


def test_bench_reports_every_variant_in_one_run():
    from adafocus.apps.bench import format_bench, run_bench
    from adafocus.training.config import RunConfig
    from train_helpers import TINY

    config = RunConfig.from_dict({**TINY, "train": {**TINY["train"], "threads": 1}})
    result = run_bench(config, batch_size=10, iterations=1, rounds=1, exit_mix="0.3,0.5,0.2")
    assert result["exit_fractions"] == pytest.approx([0.3, 0.5, 0.2])
    assert set(result["videos_per_s"]) == {"early_exit", "all_cubes", "glance_only", "baseline"}
    g = result["gmacs"]
    assert g["glance_only"] < g["early_exit"] < g["all_cubes"]
    assert all(rate > 0 for rate in result["gmacs_per_s"].values())
    assert "AdaFocusV3 early exit" in format_bench(result)
    assert result["settings"]["retain_freed_memory"] is (platform.libc_ver()[0] == "glibc")
