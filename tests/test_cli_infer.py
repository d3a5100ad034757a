"""`adafocus infer` on real inputs: failed inputs reported one line each with exit 1, paths checked before
the model loads, --budget / --all-cubes, the contact sheet of a glance exit and its source-frame captions,
NaN logits refused, and checkpoints that load from any working directory."""
import numpy as np
import pytest
import torch
import yaml

from adafocus.apps import infer as infer_app
from adafocus.apps.cli import build_parser, main
from adafocus.data.synthetic import SyntheticConfig, render_video

from test_data_decoding import numbered_frames, write_video
from train_helpers import TINY, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny checkpoint (1 epoch, synthetic 8-frame 32x32 clips, 2 cubes) and a test video as .npy."""
    folder = tmp_path_factory.mktemp("infer_run")
    config = tiny_config(folder)
    assert main(["train", "--config", config, "--train.output_dir", str(folder / "run"), "--train.epochs", "1",
                 "--train.random_policy_epochs", "0"]) == 0
    video, _, _, _ = render_video(SyntheticConfig.from_dict(TINY["data"]["synthetic"]), "test", 0)
    np.save(folder / "clip.npy", video)
    return {"folder": folder, "config": config, "checkpoint": str(folder / "run" / "checkpoint.pt"),
            "npy": str(folder / "clip.npy"), "video": video}


def _error_lines(err):
    return [line for line in err.splitlines() if line.startswith("adafocus infer: error: ")]


def test_failed_inputs_one_line_each_exit_1_and_the_others_classified(run, tmp_path, capsys, caplog):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 50)
    write_video(tmp_path / "cut.mp4", numbered_frames(40))
    data = (tmp_path / "cut.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # its index (moov) was at the end
    write_video(tmp_path / "short.mkv", numbered_frames(64, 32, 32))
    data = (tmp_path / "short.mkv").read_bytes()
    (tmp_path / "short.mkv").write_bytes(data[: len(data) // 2])  # opens, but ends early
    bad = [tmp_path / n for n in ("empty.mp4", "text.mp4", "cut.mp4", "short.mkv", "missing.mp4")]
    code = main(["infer", run["npy"], *map(str, bad), "--checkpoint", run["checkpoint"]])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err
    lines = _error_lines(err)
    assert len(lines) == len(bad)
    for path in bad:
        assert sum(str(path) in line for line in lines) == 1
    assert any("short.mkv" in line and "ends early" in line and "of the 64 frames" in line for line in lines)
    assert any("missing.mp4" in line and "does not exist" in line for line in lines)
    assert out.count("top-") == 1 and "clip.npy" in out  # the good input was still classified

    assert main(["infer", str(tmp_path / "short.mkv"), "--checkpoint", run["checkpoint"], "--allow-truncated"]) == 0
    assert "short.mkv" in capsys.readouterr().out and "short.mkv ends early" in caplog.text


def test_paths_are_checked_before_the_model_loads(run, tmp_path, capsys, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded although no input exists")

    monkeypatch.setattr(infer_app, "load_runner", no_load)
    assert main(["infer", str(tmp_path / "a.mp4"), str(tmp_path / "b"), "--checkpoint", run["checkpoint"]]) == 1
    assert len(_error_lines(capsys.readouterr().err)) == 2
    assert main(["infer", run["npy"], "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_budget_help_and_all_cubes(run):
    infer = build_parser()._subparsers._group_actions[0].choices["infer"]
    text = " ".join(infer.format_help().split())
    assert "stored in the checkpoint" in text and "inf: every cube" in text and "--all-cubes" in text
    state = torch.load(run["checkpoint"], weights_only=False)
    m = state["model_config"]["num_cubes"]
    for options in ({"all_cubes": True}, {"budget": float("inf")}):
        results = infer_app.run_inference([run["npy"]], run["checkpoint"], print_results=False, **options)
        assert results[0]["exit"] == m and len(results[0]["centers"]) == m
    with pytest.raises(ValueError, match="--budget needs thresholds solved by `adafocus eval`"):
        infer_app.run_inference([run["npy"]], run["checkpoint"], budget=1.0, print_results=False)
    with pytest.raises(ValueError, match="--budget nan"):
        infer_app.run_inference([run["npy"]], run["checkpoint"], budget=float("nan"), print_results=False)


def _checkpoint_with(run, tmp_path, name, change):
    state = torch.load(run["checkpoint"], weights_only=False)
    change(state)
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def test_glance_exit_contact_sheet_shows_the_glance_frames_with_source_frame_numbers(run, tmp_path, monkeypatch):
    glance_exit = _checkpoint_with(run, tmp_path, "glance.pt", lambda s: s["state_dict"]["exit_thresholds"].fill_(float("inf")))
    video = np.repeat(run["video"], 2, axis=0)  # 16 source frames; the model samples 8: odd source indices
    np.save(tmp_path / "long.npy", video)
    captured, save_contact_sheet = {}, infer_app.save_contact_sheet
    monkeypatch.setattr(infer_app, "save_contact_sheet", lambda path, rows, *a: captured.update(rows=rows, args=a))
    results = infer_app.run_inference([str(tmp_path / "long.npy")], glance_exit, save_cubes=str(tmp_path / "s.png"),
                                      print_results=False)
    assert results[0]["exit"] == 0 and results[0]["frame_indices"] == [1, 3, 5, 7, 9, 11, 13, 15]
    fig = infer_app.contact_sheet(captured["rows"], *captured["args"])
    titles = [axis.get_title() for axis in fig.axes if axis.get_title()]
    texts = " ".join(t.get_text() for axis in fig.axes for t in axis.texts)
    glance_frames = TINY["model"]["glance_frames"]
    assert len(titles) == glance_frames and all(t.startswith("glance: frame ") for t in titles)
    assert {int(t.split()[-1]) for t in titles} <= set(results[0]["frame_indices"])
    assert "exit 0: glance only" in texts
    sheet = tmp_path / "sheet.png"
    save_contact_sheet(str(sheet), captured["rows"], *captured["args"])
    assert sheet.stat().st_size > 1000

    captured.clear()
    results = infer_app.run_inference([str(tmp_path / "long.npy")], run["checkpoint"], all_cubes=True,
                                      save_cubes=str(tmp_path / "s.png"), print_results=False)
    fig = infer_app.contact_sheet(captured["rows"], *captured["args"])
    titles = [axis.get_title() for axis in fig.axes if axis.get_title()]
    assert len(titles) == results[0]["exit"] and all(t.startswith("cube ") for t in titles)
    assert {int(t.split()[-1]) for t in titles} <= set(results[0]["frame_indices"])  # Dt = 1: "cube k: frame N"


def test_nan_logits_are_refused_naming_the_checkpoint(run, tmp_path, capsys):
    def poison(state):
        for key, value in state["state_dict"].items():
            if key.startswith("classifier") and value.is_floating_point():
                value.fill_(float("nan"))

    broken = _checkpoint_with(run, tmp_path, "broken.pt", poison)
    assert main(["infer", run["npy"], "--checkpoint", broken]) == 2
    err = capsys.readouterr().err
    assert "broken.pt" in err and "non-finite logits" in err and "Traceback" not in err


def test_infer_and_eval_work_from_another_folder_with_relative_weights_in_the_config(tmp_path, monkeypatch, capsys):
    from adafocus.model import AdaFocusV3
    from adafocus.training.config import RunConfig

    first, other = tmp_path / "first", tmp_path / "other"
    (first / "weights").mkdir(parents=True)
    other.mkdir()
    values = {k: dict(v) for k, v in TINY.items()}
    values["model"] = {**values["model"], "local": {**values["model"]["local"], "weights": "weights/local.pt"}}
    values["train"] = {**values["train"], "epochs": 1, "random_policy_epochs": 0, "output_dir": "run"}
    model = AdaFocusV3(RunConfig.from_dict(values).model_config())
    torch.save(model.local.encoder.backbone.body.state_dict(), first / "weights" / "local.pt")
    config = first / "config.yaml"
    config.write_text(yaml.safe_dump(values))

    monkeypatch.chdir(first)
    assert main(["train", "--config", str(config)]) == 0
    (first / "weights" / "local.pt").unlink()  # loading for eval/infer must not need it
    video, _, _, _ = render_video(SyntheticConfig.from_dict(TINY["data"]["synthetic"]), "test", 1)
    np.save(first / "clip.npy", video)

    monkeypatch.chdir(other)
    checkpoint = str(first / "run" / "checkpoint.pt")
    assert main(["eval", "--config", str(config), "--eval.checkpoint", checkpoint]) == 0
    assert main(["infer", str(first / "clip.npy"), "--checkpoint", checkpoint]) == 0
    assert "top-" in capsys.readouterr().out
