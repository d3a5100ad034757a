"""Every config value checked against its field's type and range, and every user error one line with exit 2."""
import subprocess
import sys

import pytest
import torch

from adafocus.apps.cli import build_parser, main
from adafocus.model import EncoderConfig, ModelConfig
from adafocus.training.config import RunConfig, config_from_args
from adafocus.training.config_checks import ENCODER_FIELD_HELP, MODEL_FIELD_HELP, check_value

from train_helpers import tiny_config


def _config(tmp_path, *options):
    return config_from_args(build_parser().parse_args(["train", "--config", tiny_config(tmp_path), *options]))


def _one_error_line(capsys, command="train"):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"adafocus {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("options, message", [
    (["--train.epochs", "three"], "train.epochs='three': expected an integer"),
    (["--train.epochs", "1.5"], "train.epochs=1.5: expected an integer"),
    (["--train.epochs", "true"], "train.epochs=True: expected an integer"),
    (["--train.lr", "abc"], "train.lr='abc': expected a finite number"),
    (["--train.lr", "nan"], "train.lr='nan': expected a finite number"),
    (["--train.lr", ".inf"], "train.lr=inf: expected a finite number"),
    (["--data.flip", "maybe"], "data.flip='maybe': expected true or false"),
    (["--model.cube_size", "1,24"], r"model.cube_size='1,24': expected a list of 3 integers \(write 1,24,24"),
    (["--model.cube_size", "[1,24,x]"], "model.cube_size=.*expected a list of 3 integers"),
    (["--model.glance.tiny_stride", "two"], "model.glance.tiny_stride='two': expected an integer"),
    (["--model.local.tsm", "2"], "model.local.tsm=2: expected true or false"),
    (["--set", "train.lr_multipliers={policy: x}"], "train.lr_multipliers.policy='x': expected a finite number"),
    (["--set", "data.synthetic.num_frames=many"], "data.synthetic.num_frames='many': expected an integer"),
    (["--data.num_segments", "0"], "data.num_segments=0: expected an integer >= 1"),
    (["--data.image_size", "-3"], "data.image_size=-3: expected an integer >= 1"),
    (["--train.accumulation_steps", "0"], "train.accumulation_steps=0: expected an integer >= 1"),
    (["--train.warmup_epochs", "-1"], r"train.warmup_epochs=-1.0: expected a number >= 0"),
    (["--train.grad_clip", "-0.5"], r"train.grad_clip=-0.5: expected a number >= 0"),
    (["--train.lr", "0"], r"train.lr=0.0: expected a number > 0"),
    (["--train.lr=-1e-3"], r"train.lr=-0.001: expected a number > 0"),
    (["--train.momentum", "1"], r"train.momentum=1.0: expected a number in \[0, 1\)"),
    (["--train.dist_timeout_s", "0"], r"train.dist_timeout_s=0.0: expected a number > 0"),
    (["--eval.summary_budget", "0"], r"eval.summary_budget=0.0: expected a number in \(0, 1\]"),
    (["--train.random_policy_epochs", "9"], "train.random_policy_epochs=9: expected at most train.epochs=3"),
    (["--model.glance_frames", "32"], r"model.glance_frames=32: expected at most the 8 frames .*data.synthetic.num_frames"),
    (["--model.cube_size", "1,64,64"], r"model.cube_size=\[1, 64, 64\]: expected a cube inside the 8x32x32 clips"),
    (["--train.optimizer", "adamm"], "train.optimizer='adamm': expected one of sgd, adamw .did you mean adamw"),
    (["--data.decoder", "ffmpeg"], "data.decoder='ffmpeg': expected one of auto, pyav, torchcodec"),
    (["--train.device", "gpu"], "train.device='gpu': expected auto, cpu, cuda or cuda:N"),
    (["--model.preset", "tinyy"], "model.preset='tinyy': expected one of .* .did you mean tiny"),
    (["--set", "train.learning_rat=1"], r"unknown train option\(s\) \['learning_rat'\] \(did you mean learning_rate|unknown train option"),
    (["--set", "trian.lr=1"], "unknown config section 'trian' .* .did you mean train"),
])
def test_bad_values_name_the_field_the_value_and_what_was_expected(tmp_path, capsys, options, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, *options)
    run = tmp_path / "run"
    assert main(["train", "--config", tiny_config(tmp_path), "--train.output_dir", str(run), *options]) == 2
    assert _one_error_line(capsys)
    assert not run.exists()  # refused before anything is written


def test_values_are_converted_to_their_fields_types(tmp_path):
    config = _config(tmp_path, "--train.lr", "1e-3", "--train.epochs", "2", "--data.flip", "no",
                     "--model.cube_size", "1,16,16", "--model.local.tiny_channels", "[4,8]",
                     "--train.output_dir", "2024", "--eval.checkpoint", "null")
    assert config.train.lr == 0.001 and isinstance(config.train.lr, float)
    assert config.train.epochs == 2 and config.data.flip is False
    assert config.train.output_dir == "2024"  # a string field keeps what was typed
    assert config.eval.checkpoint is None
    model = config.model_config()
    assert model.cube_size == (1, 16, 16) and model.local.tiny_channels == (4, 8)
    for text in ("1,16,16", "[1,16,16]", "(1, 16, 16)", "[1, 16, 16]"):
        assert _config(tmp_path, "--model.cube_size", text).model_config().cube_size == (1, 16, 16)


def test_yaml_values_are_checked_too(tmp_path):
    with pytest.raises(ValueError, match="train.epochs='3x': expected an integer"):
        RunConfig.from_dict({"train": {"epochs": "3x"}})
    with pytest.raises(ValueError, match="config section 'train' must be a mapping"):
        RunConfig.from_dict({"train": [1, 2]})
    assert RunConfig.from_dict({"train": {"lr": "1e-3"}}).train.lr == 0.001  # PyYAML reads 1e-3 as a string


def test_check_value_by_type():
    from typing import Dict, Optional, Tuple

    assert check_value("16", Tuple[int, ...], "x") == (16,)
    assert check_value(16, Tuple[int, ...], "x") == (16,)
    assert check_value(None, Optional[int], "x") is None and check_value("3", Optional[int], "x") == 3
    assert check_value({"a": 1}, Dict[str, float], "x") == {"a": 1.0}
    with pytest.raises(ValueError, match="x=1.5: expected an integer or null"):
        check_value(1.5, Optional[int], "x")
    with pytest.raises(ValueError, match="expected a list of 3 integers"):
        check_value([1, True, 3], Tuple[int, int, int], "x")


def test_unknown_option_suggests_the_closest_and_prefixes_are_not_matched(capsys):
    assert_exit = pytest.raises(SystemExit)
    with assert_exit as info:
        main(["train", "--train.epoch", "3"])
    assert info.value.code == 2
    line = _one_error_line(capsys)
    assert "--train.epoch" in line and "did you mean --train.epochs?" in line
    with pytest.raises(SystemExit):
        main(["train", "--resu"])  # a prefix of --resume is not accepted (allow_abbrev=False)
    assert "did you mean --resume?" in _one_error_line(capsys)


def test_misspelt_command_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evl"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("adafocus: error:") and "did you mean eval?" in err
    assert len(err.splitlines()) == 1


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train:\n  epochs: [1, 2\n")
    assert main(["train", "--config", str(bad_yaml)]) == 2
    line = _one_error_line(capsys)
    assert "bad.yaml" in line and "not valid YAML" in line
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in _one_error_line(capsys)
    not_checkpoint = tmp_path / "notes.pt"
    not_checkpoint.write_text("these are my notes, not a checkpoint\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (not_checkpoint, empty):
        assert main(["eval", "--config", tiny_config(tmp_path), "--eval.checkpoint", str(path)]) == 2
        _one_error_line(capsys, "eval")
        (tmp_path / "v.npy").write_bytes(b"")
        assert main(["infer", str(tmp_path), "--checkpoint", str(path)]) == 2
        _one_error_line(capsys, "infer")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_device_without_a_gpu_is_one_line(tmp_path, capsys):
    assert main(["train", "--config", tiny_config(tmp_path), "--train.device", "cuda"]) == 2
    assert "no CUDA GPU" in _one_error_line(capsys)
    assert main(["infer", str(tmp_path), "--checkpoint", "x.pt", "--device", "cuda:0"]) == 2
    assert "no CUDA GPU" in _one_error_line(capsys, "infer")


def test_unusable_torchcodec_is_one_line(tmp_path, capsys, monkeypatch):
    from adafocus.data import decoding

    monkeypatch.setattr(decoding, "torchcodec_error", lambda: "ImportError: No module named 'torchcodec'")
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    assert main(["train", "--config", tiny_config(tmp_path), "--data.kind", "videos", "--data.train_list",
                 str(tmp_path / "list.txt"), "--data.decoder", "torchcodec", "--data.num_segments", "8",
                 "--data.image_size", "32"]) == 2
    line = _one_error_line(capsys)
    assert "data.decoder='torchcodec'" in line and "pip install torchcodec" in line


def test_verbose_shows_the_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "adafocus", "-v", "train", "--config", str(tmp_path / "no.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" in done.stderr and "no.yaml does not exist" in done.stderr
    done = subprocess.run([sys.executable, "-m", "adafocus", "train", "--config", str(tmp_path / "no.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_every_config_field_has_a_help_sentence():
    import dataclasses

    assert {f.name for f in dataclasses.fields(ModelConfig)} <= set(MODEL_FIELD_HELP)
    assert {f.name for f in dataclasses.fields(EncoderConfig)} <= set(ENCODER_FIELD_HELP)
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    import argparse

    helps = {a.dest: a.help for a in train._actions if a.help and a.help != argparse.SUPPRESS and "." in a.dest}
    for dest, text in helps.items():
        sentence = text.split(" (default:")[0]
        assert len(sentence) > 15 and not sentence.startswith("ModelConfig."), (dest, text)
    assert "1,24,24 or [1,24,24]" in train.format_help()
    for name in ("model.cube_size", "model.local.weights", "model.glance.backbone", "data.num_segments", "eval.budgets"):
        assert name in helps
    assert "INT,INT,INT" in train.format_help()


def test_missing_train_extra_is_one_line_naming_it():
    code = ("import sys; sys.modules['yaml'] = None\n"
            "from adafocus.apps.cli import main\nsys.exit(main(['--help']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "[train] extra" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_train_extra_holds_what_the_command_imports():
    import ast
    import pathlib

    setup = pathlib.Path(__file__).resolve().parents[1] / "setup.py"
    call = next(node for node in ast.walk(ast.parse(setup.read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    extras = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "extras_require"))
    assert {"pyyaml", "av", "torchvision", "matplotlib", "tqdm"} <= set(extras["train"])
