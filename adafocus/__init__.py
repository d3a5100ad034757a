"""AdaFocusV3: unified spatial-temporal dynamic video recognition, built on cubecrop.

Layers (each imports only from the ones before it; adafocus.data stands beside model):
    adafocus.model       the networks (nn.Modules only) and their configuration
    adafocus.data        datasets: the synthetic task, frame folders, video files
    adafocus.inference   batched early exit, frame de-duplication, the cost model
    adafocus.evaluation  metrics, threshold calibration (Eq. 7), reports, plots
    adafocus.training    run config, trainer, checkpoints, torchrun/DDP
    adafocus.apps        the `adafocus` command line and its commands

The public API is re-exported here and imported on first use, so `import adafocus`
stays cheap.
"""
import importlib

_PUBLIC = {
    "AdaFocusV3": "adafocus.model",
    "FullVideoBaseline": "adafocus.model",
    "ModelConfig": "adafocus.model",
    "EncoderConfig": "adafocus.model",
    "EarlyExitRunner": "adafocus.inference",
    "InferenceOutput": "adafocus.inference",
    "load_model": "adafocus.training",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'adafocus' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
