"""Triton backend of the cube-crop ops (placeholder until the kernels land)."""
import torch


def is_available(device: torch.device) -> bool:
    return False
