"""Training on a frame-folder list keeps going past an unreadable video, and counts it."""
import numpy as np
import torch

from adafocus.training.config import RunConfig
from adafocus.training.trainer import Trainer

from test_data_lists import write_frame_folder
from train_helpers import TINY


def test_training_skips_and_counts_unreadable_videos(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        write_frame_folder(tmp_path / "frames" / f"v{i}", rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8))
        lines.append(f"v{i} 6 {i % 3}")
    lines.append("missing 6 1")  # listed but never extracted
    for frame in (tmp_path / "frames" / "v3").iterdir():
        frame.write_bytes(b"not a png")  # a corrupt video
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    config = RunConfig.from_dict({
        "model": {**TINY["model"], "num_classes": 3},
        "data": {"kind": "frames", "root": str(tmp_path / "frames"), "train_list": str(tmp_path / "train.txt"),
                 "val_list": str(tmp_path / "train.txt"), "num_segments": 4, "image_size": 32,
                 "filename_tmpl": "img_{:05d}.png", "flip": False},
        "train": {**TINY["train"], "epochs": 2, "random_policy_epochs": 1, "batch_size": 3,
                  "output_dir": str(tmp_path / "run")},
    })
    trainer = Trainer(config)
    history = trainer.fit()
    assert [h["skipped"] for h in history] == [2, 2]  # 9 videos = 3 batches of 3: every video seen each epoch
    state = torch.load(trainer.checkpoint_path, weights_only=False)
    assert state["epoch"] == 2 and state["num_skipped"] == 4
