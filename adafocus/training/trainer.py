"""The bundled trainer: AdaFocusV3 on the synthetic task or on list-file datasets.

One process or many (torchrun + DistributedDataParallel). Each step sees one
global batch (`train.batch_size` videos), split across processes and
gradient-accumulation micro-batches (distributed.GlobalBatchSampler), so the
global batches are the same at any world size.

Recipe (docs/design.md, "Training"): the first `random_policy_epochs` epochs train
fG/fL/fC on random cubes (the policy is skipped), then the configured policy is
used and trained through the configured crop gradient. Loss: the model's (paper Eq. 1, the sum of
every exit's cross-entropy).

Checkpoint (checkpoint.py) after every epoch, atomically and checksummed, the
one before kept as checkpoint.prev.pt; `resume=True` restarts from the newest
intact one and continues bit-for-bit: the sampler order depends only on
(seed, epoch), the data only on (seed, epoch, index), and every RNG state is
restored. Under DDP every collective is bounded by train.dist_timeout_s, so a
stopped or dead process ends the run with one clear error (docs/design.md,
"Reliability").
"""
from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import time
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from adafocus.data import build_dataset, collate_videos
from adafocus.model import AdaFocusV3, load_pretrained_encoders
from adafocus.training import checkpoint as ckpt
from adafocus.training import distributed
from adafocus.training.config import RunConfig, save_yaml
from adafocus.utils.files import temp_prefix

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
# Entries --resume restores (the rest of a checkpoint is informative).
RESUME_KEYS = ["state_dict", "optimizer", "scheduler", "scaler", "rng", "epoch", "global_step"]


def parameter_groups(model: nn.Module, base_lr: float, weight_decay: float, multipliers: Dict[str, float]) -> List[dict]:
    """Optimizer groups by top-level submodule (policy, glance, local, classifier, ...).

    Each group's lr = base_lr * multipliers.get(name, 1). Biases and norm
    weights (1-D tensors) get no weight decay.
    """
    known = {name for name, _ in model.named_children()}
    unknown = set(multipliers) - known
    if unknown:
        raise ValueError(f"train.lr_multipliers names unknown submodule(s) {sorted(unknown)}; the model has {sorted(known)}")
    groups = []
    for name, module in model.named_children():
        decay = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
        factor = float(multipliers.get(name, 1.0))
        for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, ".no_decay")):
            if params:
                groups.append({"params": params, "lr": base_lr * factor, "weight_decay": wd, "name": name + suffix})
    direct = [p for n, p in model.named_parameters(recurse=False) if p.requires_grad]
    if direct:
        groups.append({"params": direct, "lr": base_lr, "weight_decay": weight_decay, "name": "model"})
    return groups


def build_optimizer(model: nn.Module, train_config) -> torch.optim.Optimizer:
    groups = parameter_groups(model, train_config.lr, train_config.weight_decay, train_config.lr_multipliers)
    if train_config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_config.lr, momentum=train_config.momentum, nesterov=train_config.momentum > 0)
    return torch.optim.AdamW(groups, lr=train_config.lr)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR factor per step: linear warm-up from ~0 to 1, then cosine down to min_ratio."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def autocast_context(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def exit_correct(logits: List[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Per exit: number of videos whose top-1 class is (one of) the label(s)."""
    out = []
    for exit_logits in logits:
        top1 = exit_logits.argmax(dim=1)
        if target.dim() == 2:
            out.append(target.gather(1, top1[:, None]).gt(0).sum())
        else:
            out.append(top1.eq(target).sum())
    return torch.stack(out).double()


class Trainer:
    """Holds the whole training state; `fit()` runs the remaining epochs."""

    def __init__(self, config: RunConfig, resume: bool = False, model: Optional[nn.Module] = None):
        """model: train this module instead of the AdaFocusV3 the config describes (e.g. the
        full-video baseline); it needs forward(video, policy=...) -> .logits and loss(output, target)."""
        self.config = config
        tc = config.train
        self.dist = distributed.init(tc.device, timeout_s=tc.dist_timeout_s)
        self.device = self.dist.device
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        self.output_dir = tc.output_dir
        self.checkpoint_path = os.path.join(self.output_dir, CHECKPOINT_NAME)
        if self.dist.is_main:
            os.makedirs(self.output_dir, exist_ok=True)
            self._remove_stale_temp_files()
            save_yaml(config, os.path.join(self.output_dir, "config.yaml"))

        ckpt.seed_everything(tc.seed)
        self.model_config = config.model_config()
        self.model = AdaFocusV3(self.model_config) if model is None else model
        if not (resume and any(os.path.exists(p) for p in self.checkpoint_candidates())):
            for path in load_pretrained_encoders(self.model):
                logger.info("loaded pretrained encoder weights from %s", path)
        self.model.to(self.device)
        self.train_set = build_dataset(config.data, "train", self.model_config.num_classes, seed=tc.seed)
        self.sampler = distributed.GlobalBatchSampler(
            len(self.train_set), tc.batch_size, self.dist.rank, self.dist.world_size,
            accumulation=tc.accumulation_steps, seed=tc.seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        if tc.max_steps_per_epoch > 0:
            self.steps_per_epoch = min(self.steps_per_epoch, tc.max_steps_per_epoch)
        self.optimizer = build_optimizer(self.model, tc)
        total = self.steps_per_epoch * tc.epochs
        warmup = int(round(tc.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(total, warmup, tc.min_lr_ratio))
        self.use_amp = bool(tc.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp and self.device.type == "cuda")
        self.epoch = 0
        self.global_step = 0
        self.num_skipped = 0
        self.history: List[dict] = []
        if resume:
            self._resume()
        self.ddp_model = self.model
        if self.dist.enabled:
            # The policy gets no gradient in random-policy epochs: let DDP allow unused parameters.
            with distributed.collective_guard(self.dist):
                self.ddp_model = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    find_unused_parameters=True)
        self.writer = None
        if self.dist.is_main and tc.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.output_dir, "tb"))

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "state_dict": self.model.state_dict(),
            "config": self.config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "num_skipped": self.num_skipped,
            "history": self.history,
        }

    def checkpoint_candidates(self) -> List[str]:
        """The checkpoints --resume tries, newest first: checkpoint.pt, then its backup checkpoint.prev.pt."""
        return [self.checkpoint_path, ckpt.previous_path(self.checkpoint_path)]

    def _remove_stale_temp_files(self) -> None:
        """Delete the temporary files a run killed while saving left behind (each as large as a checkpoint)."""
        for path in self.checkpoint_candidates():
            for stale in glob.glob(os.path.join(self.output_dir, glob.escape(temp_prefix(path)) + "*.tmp")):
                logger.info("removing %s, left by a run stopped while it saved a checkpoint", stale)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stale)

    def _restore(self, state: dict, path: str) -> None:
        ckpt.require(state, path, RESUME_KEYS, "--resume")
        ckpt.load_weights(self.model, state["state_dict"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as error:
            raise ckpt.CheckpointError(f"checkpoint {path}: its training state does not fit this run's optimizer or "
                                       f"schedule: {' '.join(str(error).split())[:200]}") from error
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.num_skipped = int(state.get("num_skipped", 0))
        self.history = list(state.get("history", []))

    def _resume(self) -> None:
        """Restore the newest intact checkpoint; a damaged one is passed over with a warning."""
        candidates = [path for path in self.checkpoint_candidates() if os.path.exists(path)]
        if not candidates:
            logger.warning("--resume: no checkpoint at %s, starting from scratch", self.checkpoint_path)
            return
        failures = []
        for path in candidates:
            try:
                self._restore(ckpt.load(path, map_location=self.device), path)
            except ckpt.CheckpointError as error:
                failures.append(str(error))
                if self.dist.is_main:
                    logger.warning("--resume: %s; trying the previous checkpoint", error)
                continue
            if self.dist.is_main:
                logger.info("resumed from %s at epoch %d", path, self.epoch)
                if failures:
                    logger.warning("--resume: resumed from the older checkpoint %s (epoch %d): the epochs after it "
                                   "are trained again", path, self.epoch)
            return
        raise ckpt.CheckpointError(f"--resume: no intact checkpoint in {self.output_dir}: {'; '.join(failures)} "
                                   "(move them away to start from scratch)")

    def save(self) -> None:
        """Checkpoint on the main process (the previous one kept as checkpoint.prev.pt). Every process
        learns whether it worked, so a failed save (a full disk) ends all of them, not only the main one."""
        error = None
        if self.dist.is_main:
            try:
                ckpt.save_atomic(self.state_dict(), self.checkpoint_path, keep_previous=True)
            except Exception as failure:  # noqa: BLE001 - re-raised below, once the other processes know
                error = failure
        failed = distributed.all_reduce_sum(torch.tensor([0.0 if error is None else 1.0]))
        if error is not None:
            raise error
        if float(failed[0]) > 0:
            raise ckpt.CheckpointWriteError(f"the main process could not save checkpoint {self.checkpoint_path} "
                                            "(its error says why)")

    # -------------------------------------------------------------- training
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        return DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate_videos,
                          num_workers=self.config.data.num_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)

    def policy_choice(self, epoch: int) -> str:
        """"random" during the warm-up epochs, else the configured policy."""
        return "random" if epoch < self.config.train.random_policy_epochs else self.model_config.policy

    def _zero_contribution(self, policy: str) -> None:
        """The step of a micro-batch whose every video was unreadable: a zero gradient.

        Under DDP the forward and backward go through the DDP module on a blank clip, so this
        process takes part in the same collectives (buffer broadcast, gradient all-reduce) as
        the others; its BatchNorm statistics are restored afterwards, since the blank clip is
        no data. One process just adds zero gradients (the grad scaler needs some).
        """
        if not self.dist.enabled:
            sum(p.sum() * 0 for p in self.model.parameters()).backward()
            return
        frames, height, width = self.config.clip_shape()
        blank = torch.zeros(1, 3, frames, height, width, device=self.device)
        buffers = [b.detach().clone() for b in self.model.buffers()]
        with autocast_context(self.device, self.use_amp):
            output = self.ddp_model(blank, policy=policy)
            loss = sum(logits.float().sum() for logits in output.logits) * 0
        self.scaler.scale(loss).backward()
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), buffers):
                buffer.copy_(saved)

    def train_epoch(self) -> dict:
        tc = self.config.train
        self.model.train()
        policy = self.policy_choice(self.epoch)
        accumulation = tc.accumulation_steps
        num_exits = self.model_config.num_exits
        sums = torch.zeros(3 + num_exits, dtype=torch.float64)  # loss*n, n, skipped, correct per exit
        loader = self._loader()
        progress = None
        if self.dist.is_main and tc.progress:
            from tqdm import tqdm

            progress = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{tc.epochs}", leave=False, dynamic_ncols=True)
        iterator = iter(loader)
        for step in range(self.steps_per_epoch):
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(accumulation):
                batch = next(iterator)
                sums[2] += batch["num_skipped"]
                sync = micro == accumulation - 1
                context = self.ddp_model.no_sync() if (self.dist.enabled and not sync) else contextlib.nullcontext()
                with context:
                    if batch["video"] is None:
                        self._zero_contribution(policy)
                        continue
                    video = batch["video"].to(self.device, non_blocking=True)
                    target = batch["label"].to(self.device, non_blocking=True)
                    with autocast_context(self.device, self.use_amp):
                        output = self.ddp_model(video, policy=policy)
                        loss = self.model.loss(output, target)
                    self.scaler.scale(loss / accumulation).backward()
                n = video.shape[0]
                sums[0] += float(loss.detach()) * n
                sums[1] += n
                sums[3:] += exit_correct([l.detach().float() for l in output.logits], target).cpu()
            self.scaler.unscale_(self.optimizer)
            if tc.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            else:
                grad_norm = torch.tensor(0.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.global_step += 1
            if self.writer is not None and self.global_step % max(1, tc.log_every) == 0:
                self.writer.add_scalar("train/loss", float(loss.detach()), self.global_step)
                self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
                self.writer.add_scalar("train/grad_norm", float(grad_norm), self.global_step)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if progress is not None:
            progress.close()
        distributed.all_reduce_sum(sums)
        n = max(1.0, float(sums[1]))
        self.num_skipped += int(sums[2])
        return {
            "epoch": self.epoch + 1,
            "loss": float(sums[0]) / n,
            "exit_accuracy": [float(c) / n for c in sums[3:]],
            "skipped": int(sums[2]),
            "policy": policy,
        }

    def fit(self, until_epoch: Optional[int] = None) -> List[dict]:
        """Train up to `until_epoch` finished epochs (default: train.epochs)."""
        tc = self.config.train
        start = time.time()
        last = tc.epochs if until_epoch is None else min(until_epoch, tc.epochs)
        while self.epoch < last:
            epoch_start = time.time()
            with distributed.collective_guard(self.dist, self.checkpoint_path):
                metrics = self.train_epoch()
            metrics["seconds"] = time.time() - epoch_start
            self.epoch += 1
            self.history.append(metrics)
            if self.dist.is_main:
                accs = " ".join(f"{a * 100:.1f}" for a in metrics["exit_accuracy"])
                logger.info("epoch %d/%d (%s cubes) loss %.4f train top-1 per exit [%s] skipped %d  %.1fs",
                            self.epoch, tc.epochs, metrics["policy"], metrics["loss"], accs,
                            metrics["skipped"], metrics["seconds"])
                if self.writer is not None:
                    self.writer.add_scalar("epoch/loss", metrics["loss"], self.epoch)
                    for k, acc in enumerate(metrics["exit_accuracy"]):
                        self.writer.add_scalar(f"epoch/train_top1_exit{k}", acc, self.epoch)
                    self.writer.add_scalar("epoch/skipped_videos", metrics["skipped"], self.epoch)
            with distributed.collective_guard(self.dist, self.checkpoint_path):
                self.save()
        if self.writer is not None:
            self.writer.flush()
        if self.dist.is_main:
            logger.info("training finished in %.1fs; checkpoint %s", time.time() - start, self.checkpoint_path)
        return self.history

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(config: RunConfig, resume: bool = False) -> str:
    """Train to the end; returns the checkpoint path."""
    trainer = Trainer(config, resume=resume)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer.checkpoint_path
