"""A tiny run configuration shared by the trainer and CLI tests (seconds per epoch on 2 cores)."""
import yaml

TINY = {
    "model": {"preset": "tiny", "num_classes": 10, "glance_frames": 4, "glance_resolution": 8,
              "glance": {"tiny_channels": [4, 8], "tiny_stride": 1}, "local": {"tiny_channels": [4, 8],
              "tiny_stride": 4}, "policy_channels": 4, "cube_size": [1, 16, 16], "num_cubes": 2,
              "policy": "learned", "crop_gradient": "deep_feature"},
    "data": {"kind": "synthetic", "cache_dir": None,
             "synthetic": {"num_frames": 8, "height": 32, "width": 32, "train_size": 32, "val_size": 16,
                           "test_size": 16, "digit_size": [8, 10], "duration": [2, 4]}},
    "train": {"epochs": 3, "random_policy_epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.01,
              "warmup_epochs": 0.5, "seed": 3, "threads": 1, "progress": False, "tensorboard": False},
    "eval": {"batch_size": 16, "budgets": 5},
}


def tiny_config(tmp_path, **sections):
    """Write the tiny config (sections merged in) and return its path."""
    values = {k: dict(v) for k, v in TINY.items()}
    for section, overrides in sections.items():
        values[section].update(overrides)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)
