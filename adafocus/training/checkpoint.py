"""Checkpoints: one plain torch.save dict, written atomically.

Layout (the conventions of timm, TSM and GFNet):
    state_dict    model weights, never with a DDP "module." prefix
    config        the merged run configuration (dict)
    model_config  the ModelConfig as a dict (enough to rebuild the model)
    epoch         number of finished epochs
    optimizer, scheduler, scaler, rng   training state for --resume
    thresholds, gflops_per_exit         early-exit settings, once evaluated
A checkpoint is written to a temporary file in the same folder and renamed
over the old one (os.replace), so a run killed mid-write leaves the previous
checkpoint intact.
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict

import numpy as np
import torch


def save_atomic(state: Dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str, map_location="cpu") -> Dict[str, Any]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=False)


def strip_module_prefix(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """Drop the "module." prefix DataParallel/DDP checkpoints carry."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict


def rng_state() -> Dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_model(path: str, device="cpu"):
    """(AdaFocusV3 in eval mode with its stored thresholds, checkpoint dict) from a checkpoint.

    Every weight comes from the checkpoint: the pretrained-weights files its config names are
    never read, so a checkpoint loads from any folder and on any machine.
    """
    from adafocus.model import AdaFocusV3, ModelConfig

    state = load(path, map_location="cpu")
    model = AdaFocusV3(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(strip_module_prefix(state["state_dict"]))
    return model.to(device).eval(), state
