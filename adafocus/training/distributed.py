"""Multi-process training with torchrun: process group set-up and reductions.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in the environment; we read
them from there (never a --local_rank flag, which torch >= 2.0 breaks).
Backend: NCCL for CUDA devices, gloo for CPU.

Every collective waits at most `timeout_s` (train.dist_timeout_s) for the other
processes; `collective_guard` turns the error a stopped, dead or stuck process
then causes (gloo: "Timed out waiting ...", "Connection closed by peer") into one
DistributedError saying what happened. (NCCL's watchdog instead aborts the process
after the timeout, with its own log lines.)
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist


# How long a collective waits for the other processes (torch's own default is 30 minutes).
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(RuntimeError):
    """A collective across the training processes failed: another one stopped, died or is stuck."""


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init(device_name: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistInfo:
    """Join the process group torchrun set up (a no-op for a single process); collectives wait at most timeout_s."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world_size, local_rank, device, timeout_s)


_COLLECTIVE_FAILURE = re.compile(r"gloo|nccl|ProcessGroup|Timed out waiting|Connection (closed|reset)|timeout", re.I)


def is_collective_failure(error: BaseException) -> bool:
    return isinstance(error, dist.DistError) or bool(_COLLECTIVE_FAILURE.search(str(error)))


def _cause(error: BaseException) -> str:
    """The gloo/NCCL message without its source-file prefix and boilerplate."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    return text.split(". This is typically")[0].rstrip(".")


@contextlib.contextmanager
def collective_guard(info: DistInfo, checkpoint_path: str = ""):
    """Re-raise a failed collective (under several processes) as one DistributedError that says what happened."""
    try:
        yield
    except RuntimeError as error:
        if not info.enabled or isinstance(error, DistributedError) or not is_collective_failure(error):
            raise
        resume = ""
        if checkpoint_path and os.path.exists(checkpoint_path):
            resume = f"; the last checkpoint ({checkpoint_path}) is intact: rerun with --resume"
        elif checkpoint_path:
            resume = "; no checkpoint was written yet"
        raise DistributedError(
            f"training process {info.rank} of {info.world_size}: a collective with the other processes failed "
            f"({_cause(error)}): another process stopped, crashed or is stuck (each collective waits at most "
            f"train.dist_timeout_s={info.timeout_s:g} s){resume}") from error


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place; returns the tensor)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Batches of a seeded per-epoch permutation, the same global batches at any world size.

    Each step draws one global batch of `global_batch` indices (the next slice
    of the epoch's permutation); process `rank` takes micro-batches
    `rank * accumulation + k` (k < accumulation) of it, each of
    `global_batch / (world_size * accumulation)` indices. So 2 processes with
    accumulation 1 see exactly what 1 process with accumulation 2 sees, and a
    run resumed at step s of an epoch can skip straight to it. The last
    incomplete global batch is dropped.
    """

    def __init__(self, num_items: int, global_batch: int, rank: int = 0, world_size: int = 1,
                 accumulation: int = 1, seed: int = 0, shuffle: bool = True):
        parts = world_size * accumulation
        if global_batch % parts:
            raise ValueError(
                f"batch_size {global_batch} must be divisible by world_size x accumulation_steps = {parts}")
        if num_items < global_batch:
            raise ValueError(f"dataset of {num_items} videos is smaller than one global batch ({global_batch})")
        self.num_items, self.global_batch = num_items, global_batch
        self.rank, self.world_size, self.accumulation = rank, world_size, accumulation
        self.micro_batch = global_batch // parts
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.global_batch

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulation

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        for step in range(self.start_step, self.steps_per_epoch):
            batch = order[step * self.global_batch : (step + 1) * self.global_batch]
            for k in range(self.accumulation):
                part = self.rank * self.accumulation + k
                yield batch[part * self.micro_batch : (part + 1) * self.micro_batch]
