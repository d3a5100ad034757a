"""Adaptive inference of AdaFocusV3 (paper section 3.4): integer cubes, early exit, a shrinking batch.

    runner = EarlyExitRunner(model)                  # the model's own policy choice
    out = runner(video)                              # the thresholds stored in the model
    out = runner(video, thresholds=eta)              # or any (M + 1,) entropy thresholds
    control = EarlyExitRunner(model, policy="random")  # the same weights, random cubes

A video stops at the first exit t with entropy(p_t) <= eta_t; the last exit takes the
rest. Each stage runs only on the videos still running. The runner never changes the
model; its cost model (GMACs per exit) is cached per input shape on the runner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

import cubecrop
from adafocus.inference import cost, early_exit, frame_dedup
from adafocus.model import POLICIES, AdaFocusV3
from adafocus.model.policy import choose_centers
from adafocus.model.video_checks import check_video, video_dims


@dataclass
class InferenceOutput:
    logits: torch.Tensor  # (B, classes) at the exit each video took
    exit_index: torch.Tensor  # (B,) long in [0, M]
    gflops: torch.Tensor  # (B,) float64 GMACs spent on each video
    centers: torch.Tensor  # (B, M, 3) the cubes' centers as cropped (after frame de-duplication)
    all_logits: Optional[torch.Tensor] = None  # (M + 1, B, classes) with return_all_exits


class EarlyExitRunner:
    """Batched early-exit inference of one AdaFocusV3 with one policy choice (call model.eval() first)."""

    def __init__(self, model: AdaFocusV3, policy: Optional[str] = None):
        policy = policy or model.config.policy
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.model = model
        self.policy = policy
        self._cost: Dict[tuple, List[float]] = {}

    @property
    def num_exits(self) -> int:
        return self.model.num_exits

    def gmacs_per_exit(self, video_shape: Sequence[int]) -> List[float]:
        """Cumulative GMACs per video to reach exit 0..M for inputs of `video_shape`."""
        key = video_dims(video_shape)
        if key not in self._cost:
            self._cost[key] = cost.gmacs_per_exit(self.model, key, self.policy)
        return list(self._cost[key])

    def centers(self, glance_maps: torch.Tensor, video_size: Sequence[int]) -> torch.Tensor:
        """The policy choice's centers, with frame-wise cubes (Dt = 1) moved off frames an earlier cube took."""
        model = self.model
        centers = choose_centers(model.policy, self.policy, glance_maps, video_size).float()
        dt = model.config.cube_size[0]
        if dt == 1:
            frames = frame_dedup.frame_of_center(centers[..., 0], dt, video_size[0])
            frames = frame_dedup.deduplicate_frames(frames, video_size[0])
            centers = torch.cat((frames.to(centers.dtype).unsqueeze(-1) + 0.5, centers[..., 1:]), dim=-1)
        return centers

    def _crop_running(self, video: torch.Tensor, centers: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
        """Integer cubes (R, C, Dt, Dh, Dw) of the running videos only, at centers (B, 3): one
        kernel call per running video on a view of it, so neither the finished videos are cropped
        nor the running ones copied."""
        size = self.model.config.cube_size
        if running.numel() == video.shape[0]:
            return cubecrop.crop_cubes_int(video, centers.unsqueeze(1), size)[:, 0]
        return torch.cat([cubecrop.crop_cubes_int(video[i : i + 1], centers[i : i + 1].unsqueeze(1), size)[:, 0]
                          for i in running.tolist()])

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, thresholds=None, return_all_exits: bool = False,
                 exit_plan: Optional[torch.Tensor] = None) -> InferenceOutput:
        """thresholds (M+1,) entropy thresholds eta_t (default: the model's exit_thresholds).
        With return_all_exits every video runs every exit (no saving) and all logits come back.
        exit_plan (B,) long: the exit each video takes whatever its entropy, for timing a model
        that has no calibrated thresholds (random weights give every video the same entropy)."""
        model = self.model
        check_video(video)
        eta = early_exit.check_thresholds(model.exit_thresholds if thresholds is None else thresholds, self.num_exits)
        exit_cost = torch.tensor(self.gmacs_per_exit(video.shape), dtype=torch.float64)
        b, m = video.shape[0], model.config.num_cubes
        video_size = tuple(video.shape[2:])

        glance_maps = model.glance(video)
        glance = glance_maps.mean(dim=(2, 3, 4))
        if return_all_exits:
            centers = self.centers(glance_maps, video_size)
            local = model.local(video, centers, crop="integer")
            all_logits = torch.stack(model.classifier(glance, local))
            picked, exit_index, gflops = early_exit.simulate(all_logits, eta, exit_cost)
            return InferenceOutput(picked, exit_index.to(video.device), gflops, centers, all_logits)

        embedded_glance = model.classifier.embed_glance(glance)  # once: every exit head takes it
        logits0 = model.classifier.glance_exit(embedded_glance)

        out_logits = logits0.new_empty(b, logits0.shape[1])
        exit_index = torch.full((b,), m, dtype=torch.long, device=video.device)
        centers = torch.zeros(b, m, 3, device=video.device)
        exit_plan = early_exit.check_exit_plan(exit_plan, b, m, video.device)

        def stopping(logits: torch.Tensor, t: int, rows: torch.Tensor) -> torch.Tensor:
            return early_exit.stops_at(t, logits, rows, eta, m, exit_plan)

        def can_stop(t: int, rows: torch.Tensor) -> bool:
            """Whether exit t < m may stop any of `rows` (entropies are never below -inf)."""
            if exit_plan is not None:
                return bool((exit_plan[rows] == t).any())
            return bool(eta[t] > float("-inf"))

        stops = stopping(logits0, 0, torch.arange(b, device=video.device))
        out_logits[stops] = logits0[stops]
        exit_index[stops] = 0
        running = torch.nonzero(~stops).flatten()  # indices into the batch
        if running.numel():
            # Compacted state of the videos still running; the video itself is never copied.
            run_glance = embedded_glance[running]
            centers[running] = self.centers(glance_maps[running], video_size)
            local_max = None
            first = 1
            while first <= m:
                # Cubes up to the next exit where someone may stop go through fL as one batch:
                # larger convolution batches run faster (on CPU 136 -> 146 GMAC/s for ResNet-50
                # on 128^2 cubes, 120 -> 240 frames), and the exits in between, which stop
                # nobody, are not evaluated (their heads' MFLOPs stay in the cost model).
                t = first
                while t < m and not can_stop(t, running):
                    t += 1
                cubes = [self._crop_running(video, centers[:, s - 1], running) for s in range(first, t + 1)]
                pooled = model.local.pool(model.local.encode(torch.cat(cubes) if len(cubes) > 1 else cubes[0]))
                for features in model.classifier.embed_local(pooled).split(running.numel()):
                    local_max = features if local_max is None else torch.maximum(local_max, features)
                logits = model.classifier.local_exit(t, local_max, run_glance)
                stops = stopping(logits, t, running)
                done = running[stops]
                out_logits[done] = logits[stops].to(out_logits.dtype)
                exit_index[done] = t
                keep = ~stops
                if not bool(keep.any()):
                    break
                if not bool(keep.all()):
                    running, run_glance, local_max = running[keep], run_glance[keep], local_max[keep]
                first = t + 1
        return InferenceOutput(out_logits, exit_index, exit_cost[exit_index.cpu()], centers)
