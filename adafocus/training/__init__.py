"""Training: the run configuration, the trainer, checkpoints (and the one `load_model`), torchrun/DDP.
Builds on adafocus.model and adafocus.data (evaluation runs from adafocus.apps)."""
from adafocus.training.checkpoint import load_model

__all__ = ["load_model"]
