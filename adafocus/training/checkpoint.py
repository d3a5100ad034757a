"""Checkpoints: one torch.save dict of tensors and plain values, written atomically, checksummed, with a backup.

Layout (the conventions of timm, TSM and GFNet):
    state_dict    model weights, never with a DDP "module." prefix
    config        the merged run configuration (dict)
    model_config  the ModelConfig as a dict (enough to rebuild the model)
    epoch         number of finished epochs
    optimizer, scheduler, scaler, rng   training state for --resume
    thresholds, gflops_per_exit         early-exit settings, once evaluated

Safety (docs/design.md, "Reliability"):
- written to a temporary file beside the target, fsynced and renamed over it, so a run
  killed mid-write or a full disk leaves the previous file intact (and no temporary file);
- the SHA-256 of the file is stored in the ZIP comment of torch.save's archive (the one
  place a checksum can sit without changing what torch.load returns), and checked on load:
  a truncated, bit-flipped or overwritten file is a `CheckpointError` naming it. A file
  without the comment (written by plain torch.save) loads unverified;
- `keep_previous=True` (the trainer) first rotates the old file, if intact, to
  `checkpoint.prev.pt`, so a checkpoint damaged later still leaves the one before it;
- loaded with `weights_only=True`: only tensors and plain Python values (plus the numpy
  arrays of the RNG states older checkpoints stored), never arbitrary objects.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import random
import shutil
import struct
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from adafocus.utils.files import atomic_write, temp_prefix

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: empty, truncated, corrupt, not a checkpoint, or missing an entry."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the old file, if any, is left as it was)."""


# ZIP end-of-central-directory record: 22 bytes, the last 2 the length of the comment that follows.
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_CHECKSUM_TAG = b"adafocus-checkpoint sha256="
_CHUNK = 1 << 20

# What the numpy RNG state of checkpoints written before the plain-types layout needs to unpickle.
_LEGACY_NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray, np.dtype,
                         np.dtypes.UInt32DType, np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType]


def previous_path(path: str) -> str:
    """Where the backup of `path` goes: checkpoint.pt -> checkpoint.prev.pt."""
    root, ext = os.path.splitext(path)
    return f"{root}.prev{ext}"


def _sha256(f, length: int) -> str:
    """SHA-256 of the first `length` bytes of the open file `f`."""
    digest = hashlib.sha256()
    f.seek(0)
    left = length
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def _append_checksum(f) -> None:
    """Store the SHA-256 of the archive torch.save just wrote to `f` as the archive's ZIP comment."""
    f.flush()
    size = f.seek(0, os.SEEK_END)
    f.seek(size - _EOCD_SIZE)
    record = f.read(_EOCD_SIZE)
    if len(record) != _EOCD_SIZE or record[:4] != _EOCD_SIGNATURE or record[-2:] != b"\0\0":
        raise RuntimeError("torch.save did not end its archive with a comment-less ZIP end record")
    comment = _CHECKSUM_TAG + _sha256(f, size - 2).encode()
    f.seek(size - 2)
    f.write(struct.pack("<H", len(comment)) + comment)


def stored_checksum(path: str) -> Optional[bool]:
    """True if `path`'s stored checksum matches its contents, False if it does not, None if it has none."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_size = min(size, _EOCD_SIZE + len(_CHECKSUM_TAG) + 64)
        f.seek(size - tail_size)
        tail = f.read(tail_size)
        end = tail.rfind(_EOCD_SIGNATURE)
        if end < 0 or end + _EOCD_SIZE > len(tail):
            return None
        (comment_length,) = struct.unpack("<H", tail[end + 20 : end + 22])
        comment = tail[end + _EOCD_SIZE :]
        if len(comment) != comment_length or not comment.startswith(_CHECKSUM_TAG):
            return None
        expected = comment[len(_CHECKSUM_TAG) :].decode("ascii", "replace")
        return _sha256(f, size - tail_size + end + 20) == expected


def _plain(value: Any) -> Any:
    """`value` with numpy arrays and scalars turned into tensors and Python numbers (what weights_only loads)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _os_error(error: BaseException) -> Optional[OSError]:
    """The OSError behind `error` (torch.save reports a failed write as "unexpected pos", the OSError as its context)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _rotate(path: str) -> None:
    """Make `previous_path(path)` a copy of `path` (atomically), unless `path` is missing or damaged."""
    if not os.path.exists(path):
        return
    if stored_checksum(path) is False:
        logger.warning("checkpoint %s does not match its checksum: keeping %s as the backup instead of it",
                       path, previous_path(path))
        return
    backup = previous_path(path)
    link = os.path.join(os.path.dirname(os.path.abspath(backup)), f"{temp_prefix(backup)}link.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    try:
        try:
            os.link(path, link)  # the old file gets a second name: no copy, and `path` never goes missing
        except OSError:
            shutil.copyfile(path, link)  # a file system without hard links
        os.replace(link, backup)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        raise


def save_atomic(state: Dict[str, Any], path: str, keep_previous: bool = False) -> None:
    """Write `state` to `path` atomically with its checksum; keep_previous: rotate the old file to
    previous_path(path) first. A failed write (a full disk, ...) deletes its temporary file, leaves
    the old files as they were and raises one CheckpointWriteError naming `path` and the cause."""
    state = _plain(state)
    try:
        with atomic_write(path, "w+b", before_replace=(lambda: _rotate(path)) if keep_previous else None) as f:
            torch.save(state, f)
            _append_checksum(f)
    except Exception as error:
        cause = _os_error(error)
        if cause is None:
            raise
        reason = cause.strerror or str(cause)
        failure = CheckpointWriteError(f"could not save checkpoint {path}: {reason} (the previous checkpoint, if any, "
                                       "is left as it was)")
        failure.errno = cause.errno
        raise failure from error


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def load(path: str, map_location="cpu") -> Dict[str, Any]:
    """The checkpoint dict at `path`, its checksum checked; a file that is not one is a CheckpointError naming it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was never written completely")
        verified = stored_checksum(path)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {error.strerror or error}") from error
    if verified is False:
        raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match the SHA-256 stored in it "
                              "(a damaged or partly overwritten file)")
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY_GLOBALS):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain values; it is not "
                                  "loaded, since unpickling them could run code") from error
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint: {_describe(error)}") from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, struct.error) as error:
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (truncated or corrupt): "
                              f"{_describe(error)}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict")
    if verified is None:
        logger.debug("checkpoint %s has no stored checksum (not written by adafocus): loaded unverified", path)
    return state


def require(state: Dict[str, Any], path: str, keys: List[str], purpose: str) -> None:
    """CheckpointError naming `path` unless `state` has every entry of `keys`."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} has no {', '.join(missing)} entr{'y' if len(missing) == 1 else 'ies'} "
                              f"({purpose} needs {'it' if len(missing) == 1 else 'them'}; it holds {', '.join(sorted(map(str, state)))})")


def strip_module_prefix(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """Drop the "module." prefix DataParallel/DDP checkpoints carry."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict


def load_weights(module: torch.nn.Module, state_dict: Dict[str, Any], path: str) -> None:
    """module.load_state_dict, a mismatch reported as one CheckpointError naming `path`."""
    try:
        module.load_state_dict(strip_module_prefix(state_dict))
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the model: {_describe(error)}") from error


def rng_state() -> Dict[str, Any]:
    """Every RNG's state as tensors and plain values (numpy's key as an int64 tensor)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state = {**numpy_state, "state": {**numpy_state["state"],
                                            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))}}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):  # rng_state's layout; older checkpoints hold np.random.get_state()'s tuple
        key = numpy_state["state"]["key"]
        key = np.asarray(key.numpy() if isinstance(key, torch.Tensor) else key).astype(np.uint32)
        numpy_state = {**numpy_state, "state": {**numpy_state["state"], "key": key}}
    np.random.set_state(numpy_state)
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
    require(state, path, ["model_config", "state_dict"], "loading the model")
    try:
        model = AdaFocusV3(ModelConfig.from_dict(state["model_config"]))
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path}: its model_config does not describe a model: "
                              f"{_describe(error)}") from error
    load_weights(model, state["state_dict"], path)
    return model.to(device).eval(), state
