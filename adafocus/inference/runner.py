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

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, thresholds=None, return_all_exits: bool = False) -> InferenceOutput:
        """thresholds (M+1,) entropy thresholds eta_t (default: the model's exit_thresholds).
        With return_all_exits every video runs every exit (no saving) and all logits come back."""
        model = self.model
        check_video(video)
        eta = early_exit.check_thresholds(model.exit_thresholds if thresholds is None else thresholds, self.num_exits)
        exit_cost = torch.tensor(self.gmacs_per_exit(video.shape), dtype=torch.float64)
        b, m = video.shape[0], model.config.num_cubes
        video_size = tuple(video.shape[2:])

        glance_maps = model.glance(video)
        glance = glance_maps.mean(dim=(2, 3, 4))
        logits0 = model.classifier.glance_exit(glance)
        if return_all_exits:
            centers = self.centers(glance_maps, video_size)
            local = model.local(video, centers, crop="integer")
            all_logits = torch.stack(model.classifier(glance, local))
            picked, exit_index, gflops = early_exit.simulate(all_logits, eta, exit_cost)
            return InferenceOutput(picked, exit_index.to(video.device), gflops, centers, all_logits)

        out_logits = logits0.new_empty(b, logits0.shape[1])
        exit_index = torch.full((b,), m, dtype=torch.long, device=video.device)
        centers = torch.zeros(b, m, 3, device=video.device)
        stops = early_exit.exit_mask(logits0, eta[0], last=m == 0)
        out_logits[stops] = logits0[stops]
        exit_index[stops] = 0
        running = torch.nonzero(~stops).flatten()  # indices into the batch
        if running.numel():
            # Compacted state of the videos still running. The video itself is not compacted: cropping
            # one cube from every video and keeping the running rows moves far less memory.
            run_glance = glance[running]
            centers[running] = self.centers(glance_maps[running], video_size)
            local_max = None
            for t in range(1, m + 1):
                cube = cubecrop.crop_cubes_int(video, centers[:, t - 1 : t], model.config.cube_size)[running, 0]
                features = model.classifier.embed_local(model.local.pool(model.local.encode(cube)))
                local_max = features if local_max is None else torch.maximum(local_max, features)
                logits = model.classifier.local_exit(t, local_max, run_glance)
                stops = early_exit.exit_mask(logits, eta[t], last=t == m)
                done = running[stops]
                out_logits[done] = logits[stops].to(out_logits.dtype)
                exit_index[done] = t
                keep = ~stops
                if not bool(keep.any()):
                    break
                if not bool(keep.all()):
                    running, run_glance, local_max = running[keep], run_glance[keep], local_max[keep]
        return InferenceOutput(out_logits, exit_index, exit_cost[exit_index.cpu()], centers)
