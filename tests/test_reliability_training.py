"""Faults thrown at training and its checkpoints (issue 13): nothing silent, nothing lost.

Replayed here: a run killed (after a checkpoint, and in the middle of writing one) and resumed,
bit for bit, with 1 and 2 processes; truncated, empty, bit-flipped and overwritten checkpoints
for --resume (falls back to checkpoint.prev.pt with a warning), eval and infer (one line naming
the file); checkpoints that would run code or lack entries; a full disk (simulated, and a real
small tmpfs where one can be mounted) that leaves no temporary file and the old checkpoints
intact; a DDP process that stops or dies (the others end within train.dist_timeout_s with one
clear line); a DDP micro-batch whose videos are all unreadable on one process; the config
values of the issue that mean nothing.
"""
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from adafocus.apps.cli import main
from adafocus.data.synthetic import SyntheticConfig, render_video
from adafocus.training import checkpoint as ckpt
from adafocus.training import distributed
from adafocus.training.config import RunConfig, load_yaml
from adafocus.training.trainer import Trainer

from test_data_lists import write_frame_folder
from train_helpers import TINY, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def _config(path, output_dir, **train):
    config = RunConfig.from_dict(load_yaml(path))
    config.train.output_dir = str(output_dir)
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def _weights(path):
    return ckpt.load(str(path))["state_dict"]


def _assert_same_weights(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def _same(a, b) -> bool:
    """Deep equality of two loaded checkpoints (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _one_error_line(err, command):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"adafocus {command}: error: ") and "Traceback" not in err, err
    return lines[0]


def _error_line_in_log(text, command):
    """The one error line of a command whose log lines (INFO ...) share its stderr."""
    lines = [line for line in text.splitlines() if line.startswith(f"adafocus {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _temp_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# ------------------------------------------------------------------ damage done to a checkpoint file
def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path):
    path.write_bytes(b"")


def bit_flipped(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit in the middle: tensor data, which torch.load alone never notices
    path.write_bytes(bytes(data))


def overwritten(path):
    path.write_text("these are my notes, not a checkpoint\n" * 20)


DAMAGE = {"truncated": truncated, "empty": empty, "bit_flipped": bit_flipped, "overwritten": overwritten}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A tiny 3-epoch run trained without a break: its config, its epoch-1/epoch-2 checkpoints and final weights."""
    folder = tmp_path_factory.mktemp("straight")
    config = tiny_config(folder)
    trainer = Trainer(_config(config, folder / "run"))
    trainer.fit(until_epoch=2)
    shutil.copyfile(folder / "run" / "checkpoint.pt", folder / "epoch2.pt")
    shutil.copyfile(folder / "run" / "checkpoint.prev.pt", folder / "epoch1.pt")
    trainer.fit()
    video, _, _, _ = render_video(SyntheticConfig.from_dict(TINY["data"]["synthetic"]), "test", 0)
    np.save(folder / "clip.npy", video)
    return {"folder": folder, "config": config, "run": folder / "run", "epoch1": folder / "epoch1.pt",
            "epoch2": folder / "epoch2.pt", "final": _weights(folder / "run" / "checkpoint.pt"),
            "npy": str(folder / "clip.npy")}


def _run_dir(straight, tmp_path, damage_latest=None, damage_previous=None):
    """A run folder holding the straight run's epoch-2 checkpoint and its epoch-1 backup, damaged as asked."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(straight["epoch2"], run / "checkpoint.pt")
    shutil.copyfile(straight["epoch1"], run / "checkpoint.prev.pt")
    if damage_latest:
        DAMAGE[damage_latest](run / "checkpoint.pt")
    if damage_previous:
        DAMAGE[damage_previous](run / "checkpoint.prev.pt")
    return run


# ------------------------------------------------------------------------------------- the files
def test_checkpoints_rotate_and_carry_a_checksum(straight):
    run = straight["run"]
    latest, previous = ckpt.load(str(run / "checkpoint.pt")), ckpt.load(str(run / "checkpoint.prev.pt"))
    assert (latest["epoch"], previous["epoch"]) == (3, 2)
    assert ckpt.stored_checksum(str(run / "checkpoint.pt")) is True
    assert ckpt.stored_checksum(str(run / "checkpoint.prev.pt")) is True
    assert _temp_files(run) == []
    # What --resume needs is tensors and plain values only: the file loads with weights_only=True.
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_every_bit_flip_is_caught_or_harmless(straight, tmp_path):
    # 64 single-bit flips spread over the whole file: each is a CheckpointError naming the file, or
    # (a flip in the checksum's own label) the file loads exactly as written. Nothing loads wrong.
    original = straight["epoch2"].read_bytes()
    reference = ckpt.load(str(straight["epoch2"]))
    path = tmp_path / "flipped.pt"
    caught = harmless = 0
    for position in np.linspace(0, len(original) - 1, 64).astype(int):
        data = bytearray(original)
        data[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(data))
        try:
            state = ckpt.load(str(path))
        except ckpt.CheckpointError as error:
            assert str(path) in str(error)
            caught += 1
        else:
            assert _same(state, reference), f"a flip at byte {position} loaded silently changed"
            harmless += 1
    assert caught + harmless == 64 and caught >= 62


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_one_line_naming_it_for_eval_and_infer(straight, tmp_path, capsys, damage):
    path = tmp_path / "damaged.pt"
    shutil.copyfile(straight["epoch2"], path)
    DAMAGE[damage](path)
    with pytest.raises(ckpt.CheckpointError, match="damaged.pt"):
        ckpt.load_model(str(path))
    assert main(["eval", "--config", straight["config"], "--eval.checkpoint", str(path)]) == 2
    assert str(path) in _one_error_line(capsys.readouterr().err, "eval")
    assert not (tmp_path / "curve.json").exists()
    assert main(["infer", straight["npy"], "--checkpoint", str(path)]) == 2
    assert str(path) in _one_error_line(capsys.readouterr().err, "infer")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_falls_back_to_the_previous_checkpoint_and_ends_bit_for_bit(straight, tmp_path, caplog, damage):
    run = _run_dir(straight, tmp_path, damage_latest=damage)
    resumed = Trainer(_config(straight["config"], run), resume=True)
    assert resumed.epoch == 1
    assert any("checkpoint.pt" in r.getMessage() and "previous" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")
    assert any("older checkpoint" in r.getMessage() and "checkpoint.prev.pt" in r.getMessage() for r in caplog.records)
    resumed.fit()
    _assert_same_weights(_weights(run / "checkpoint.pt"), straight["final"])
    assert ckpt.load(str(run / "checkpoint.prev.pt"))["epoch"] == 2  # the damaged file was never made the backup


def test_resume_with_no_intact_checkpoint_is_one_line_and_touches_nothing(straight, tmp_path, capsys):
    run = _run_dir(straight, tmp_path, damage_latest="bit_flipped", damage_previous="truncated")
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "checkpoint.prev.pt")}
    assert main(["train", "--config", straight["config"], "--train.output_dir", str(run), "--resume"]) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "no intact checkpoint" in line and "checkpoint.pt" in line and "checkpoint.prev.pt" in line
    assert {name: (run / name).read_bytes() for name in before} == before


def test_missing_entries_are_checkpoint_errors_not_key_errors(straight, tmp_path, caplog):
    state = ckpt.load(str(straight["epoch2"]))
    del state["model_config"], state["optimizer"]
    ckpt.save_atomic(state, str(tmp_path / "partial.pt"))
    with pytest.raises(ckpt.CheckpointError, match=r"partial.pt has no model_config entry"):
        ckpt.load_model(str(tmp_path / "partial.pt"))
    run = _run_dir(straight, tmp_path)
    shutil.copyfile(tmp_path / "partial.pt", run / "checkpoint.pt")
    assert Trainer(_config(straight["config"], run), resume=True).epoch == 1  # the backup is intact
    assert any("checkpoint.pt has no optimizer entry" in r.getMessage() for r in caplog.records)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {}, "model_config": _RunsCode(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match="evil.pt holds objects other than tensors"):
        ckpt.load(str(tmp_path / "evil.pt"))
    assert not marker.exists()


def test_an_older_checkpoint_with_a_numpy_rng_state_still_resumes(straight, tmp_path):
    # Checkpoints written before this layout stored np.random.get_state()'s tuple (a numpy array).
    run = _run_dir(straight, tmp_path)
    state = ckpt.load(str(run / "checkpoint.pt"))
    key = state["rng"]["numpy"]["state"]["key"].numpy().astype(np.uint32)
    state["rng"]["numpy"] = ("MT19937", key, state["rng"]["numpy"]["state"]["pos"], 0, 0.0)
    torch.save(state, run / "checkpoint.pt")  # plain torch.save: no checksum, numpy inside
    resumed = Trainer(_config(straight["config"], run), resume=True)
    assert resumed.epoch == 2
    resumed.fit()
    _assert_same_weights(_weights(run / "checkpoint.pt"), straight["final"])


# ------------------------------------------------------------------------------------- full disk
class _FullDisk:
    """A file whose disk fills up after `room` bytes (writes then fail with ENOSPC, as on a full disk)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_disk_full_while_saving_leaves_no_temp_file_and_the_old_checkpoints(straight, tmp_path, monkeypatch):
    run = _run_dir(straight, tmp_path)
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "checkpoint.prev.pt")}
    trainer = Trainer(_config(straight["config"], run), resume=True)
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, _FullDisk(f, 50_000), *a, **k))
    with pytest.raises(ckpt.CheckpointWriteError) as failure:
        trainer.fit()
    message = str(failure.value)
    assert "No space left on device" in message and str(run / "checkpoint.pt") in message
    assert "\n" not in message and "unexpected pos" not in message
    assert failure.value.errno == errno.ENOSPC
    assert _temp_files(run) == []
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing lost
    monkeypatch.setattr(torch, "save", real_save)
    resumed = Trainer(_config(straight["config"], run), resume=True)  # the disk has room again
    assert resumed.epoch == 2
    resumed.fit()
    _assert_same_weights(_weights(run / "checkpoint.pt"), straight["final"])


def test_disk_full_through_the_cli_is_one_line(straight, tmp_path, monkeypatch, capsys):
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, _FullDisk(f, 10_000), *a, **k))
    assert main(["train", "--config", straight["config"], "--train.output_dir", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "could not save checkpoint" in line and "No space left on device" in line
    assert _temp_files(tmp_path / "run") == [] and not (tmp_path / "run" / "checkpoint.pt").exists()


def _can_mount_tmpfs(folder) -> bool:
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{folder}'"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare to mount a private tmpfs")
def test_a_real_full_tmpfs_leaves_no_temp_file(straight, tmp_path):
    # A tmpfs of 2.5 checkpoints, mounted in a private mount namespace (gone with the process): epochs 1
    # and 2 fit (checkpoint.pt + checkpoint.prev.pt), the third save finds the disk full.
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (no user namespaces)")
    size = int(straight["epoch2"].stat().st_size * 2.5) + 8192  # + config.yaml
    script = textwrap.dedent(f"""
        import json, os, sys
        from adafocus.apps.cli import main
        from adafocus.training import checkpoint as ckpt
        code = main(["train", "--config", {straight['config']!r}, "--train.output_dir", {str(disk / 'run')!r}])
        run = {str(disk / 'run')!r}
        names = sorted(os.listdir(run))
        epochs = {{n: ckpt.load(os.path.join(run, n))["epoch"] for n in names if n.endswith(".pt")}}
        print(json.dumps({{"code": code, "names": names, "epochs": epochs}}))
    """)
    shell = f"mount -t tmpfs -o size={size} tmpfs '{disk}' && exec '{sys.executable}' -c \"$0\""
    done = subprocess.run(["unshare", "-rm", "sh", "-c", shell, script], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 2
    line = _error_line_in_log(done.stderr, "train")
    assert "No space left on device" in line and "checkpoint.pt" in line
    assert result["names"] == ["checkpoint.prev.pt", "checkpoint.pt", "config.yaml"]  # no temporary file
    assert result["epochs"] == {"checkpoint.prev.pt": 1, "checkpoint.pt": 2}


# ------------------------------------------------------------------------------ kill and resume
def test_killed_while_writing_a_checkpoint_resumes_bit_for_bit(straight, tmp_path, caplog):
    # The process dies (os._exit, like a power cut) halfway through writing the epoch-2 checkpoint: the
    # half-written temporary file stays behind; checkpoint.pt is still epoch 1.
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, torch
        real_save = torch.save
        saves = []
        def dying_save(obj, f, *args, **kwargs):
            saves.append(1)
            real_save(obj, f, *args, **kwargs)
            if len(saves) == 2:
                f.flush(); f.truncate(f.tell() // 2); f.flush(); os._exit(137)
        torch.save = dying_save
        from adafocus.apps.cli import main
        main(["train", "--config", {straight['config']!r}, "--train.output_dir", {str(run)!r}])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, timeout=300)
    assert done.returncode == 137
    assert len(_temp_files(run)) == 1 and ckpt.load(str(run / "checkpoint.pt"))["epoch"] == 1
    caplog.set_level(logging.INFO, logger="adafocus")
    resumed = Trainer(_config(straight["config"], run), resume=True)
    assert _temp_files(run) == [] and any("left by a run stopped" in r.getMessage() for r in caplog.records)
    assert resumed.epoch == 1
    resumed.fit()
    _assert_same_weights(_weights(run / "checkpoint.pt"), straight["final"])


def _run(command, timeout=300):
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _torchrun(config, output_dir, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
            "-m", "adafocus", "train", "--config", config, "--train.output_dir", str(output_dir), *extra]


def _wait_for(path, process, seconds=120):
    deadline = time.time() + seconds
    while not os.path.exists(path) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert os.path.exists(path), "no checkpoint appeared"


def test_two_process_run_killed_and_resumed_is_bit_for_bit(tmp_path):
    config = tiny_config(tmp_path, train={"epochs": 4})
    _run(_torchrun(config, tmp_path / "straight"), timeout=300)
    killed = tmp_path / "killed"
    child = subprocess.Popen(_torchrun(config, killed), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(killed / "checkpoint.pt", child)
    os.killpg(child.pid, signal.SIGKILL)  # torchrun and both training processes at once
    child.wait()
    killed_at = ckpt.load(str(killed / "checkpoint.pt"))["epoch"]
    assert 1 <= killed_at <= 3
    _run(_torchrun(config, killed, "--resume"), timeout=300)
    got, expected = ckpt.load(str(killed / "checkpoint.pt")), ckpt.load(str(tmp_path / "straight" / "checkpoint.pt"))
    assert got["epoch"] == expected["epoch"] == 4
    _assert_same_weights(got["state_dict"], expected["state_dict"])


# ------------------------------------------------------------------------------------------ DDP
def _start_ranks(config, output_dir, log_dir, *extra):
    """Two training processes joined through the environment torchrun would set (so each can be signalled)."""
    port = _free_port()
    ranks = []
    for rank in range(2):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        log = open(log_dir / f"rank{rank}.log", "w")
        ranks.append(subprocess.Popen([sys.executable, "-m", "adafocus", "train", "--config", config,
                                       "--train.output_dir", str(output_dir), *extra],
                                      cwd=ROOT, env=env, stdout=log, stderr=log))
        log.close()
    return ranks


@pytest.mark.parametrize("fault", ["stopped", "killed"])
def test_a_stopped_or_dead_process_ends_the_others_with_one_clear_line(tmp_path, fault):
    timeout_s = 15
    config = tiny_config(tmp_path, train={"epochs": 400})  # far longer than the test: it must not finish
    run = tmp_path / "run"
    ranks = _start_ranks(config, run, tmp_path, "--train.dist_timeout_s", str(timeout_s))
    try:
        _wait_for(run / "checkpoint.pt", ranks[0])
        ranks[1].send_signal(signal.SIGSTOP if fault == "stopped" else signal.SIGKILL)
        start = time.time()
        code = ranks[0].wait(timeout=timeout_s + 40)
        waited = time.time() - start
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
            process.wait()
    assert code == 2
    line = _error_line_in_log((tmp_path / "rank0.log").read_text(), "train")
    assert "training process 0 of 2" in line and "another process stopped, crashed or is stuck" in line
    assert f"train.dist_timeout_s={timeout_s}" in line and "rerun with --resume" in line
    if fault == "stopped":
        assert timeout_s - 1 < waited < timeout_s + 20
    else:
        assert waited < timeout_s + 20
    assert ckpt.load(str(run / "checkpoint.pt"))["epoch"] >= 1  # the last checkpoint is intact


def test_ddp_micro_batch_of_unreadable_videos_on_one_process_keeps_the_collectives_in_step(tmp_path):
    # Half of the list is missing; with 1 video per process per step, some steps give one process an
    # empty micro-batch while the other trains. Both must still meet in the same collectives: the run
    # ends, in step with 1 process (accumulation 2) seeing the same global batches.
    rng = np.random.default_rng(0)
    lines = []
    for i in range(4):
        write_frame_folder(tmp_path / "frames" / f"v{i}", rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8))
        lines += [f"v{i} 6 {i % 3}", f"missing{i} 6 {i % 3}"]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    config = {
        "model": {**TINY["model"], "num_classes": 3},
        "data": {"kind": "frames", "root": str(tmp_path / "frames"), "train_list": str(tmp_path / "train.txt"),
                 "val_list": str(tmp_path / "train.txt"), "num_segments": 4, "image_size": 32,
                 "filename_tmpl": "img_{:05d}.png", "flip": False},
        "train": {**TINY["train"], "epochs": 2, "random_policy_epochs": 0, "batch_size": 2, "optimizer": "sgd",
                  "momentum": 0.0, "lr": 0.05, "warmup_epochs": 0, "dist_timeout_s": 20},
    }
    (tmp_path / "frames.yaml").write_text(json.dumps(config))
    one_sided = 0
    for epoch in range(2):
        sampler = distributed.GlobalBatchSampler(8, 2, seed=TINY["train"]["seed"])
        sampler.set_epoch(epoch)
        batches = list(sampler)
        one_sided += sum(("missing" in lines[a]) != ("missing" in lines[b]) for a, b in batches)
    assert one_sided >= 1  # the case this test is about does occur
    _run(_torchrun(str(tmp_path / "frames.yaml"), tmp_path / "ddp"), timeout=120)
    assert main(["train", "--config", str(tmp_path / "frames.yaml"), "--train.output_dir", str(tmp_path / "single"),
                 "--train.accumulation_steps", "2"]) == 0
    ddp, single = ckpt.load(str(tmp_path / "ddp" / "checkpoint.pt")), ckpt.load(str(tmp_path / "single" / "checkpoint.pt"))
    assert ddp["num_skipped"] == single["num_skipped"] == 8  # 4 missing videos, 2 epochs
    compared = 0
    for name, value in single["state_dict"].items():
        if "running" in name or "num_batches" in name:
            continue  # BatchNorm buffers are rank 0's under DDP: not weights
        assert torch.allclose(ddp["state_dict"][name], value, rtol=1e-4, atol=1e-6), name
        compared += 1
    assert compared > 10


# ------------------------------------------------------------------------------- config values
def test_more_glance_frames_than_the_clip_has_stop_before_training(tmp_path, capsys):
    # On 16-frame video clips the message names data.num_segments; one line, exit 2, nothing
    # written (the other meaningless values: tests/test_cli_errors.py).
    (tmp_path / "train.txt").write_text("a.mp4 0\n")
    config = tiny_config(tmp_path, data={"kind": "videos", "root": str(tmp_path), "train_list": str(tmp_path / "train.txt"),
                                         "num_segments": 16, "image_size": 32})
    assert main(["train", "--config", config, "--train.output_dir", str(tmp_path / "run"), "--model.glance_frames", "32"]) == 2
    assert "model.glance_frames=32: expected at most the 16 frames each clip has (data.num_segments)" in \
        _one_error_line(capsys.readouterr().err, "train")
    assert not (tmp_path / "run").exists()
