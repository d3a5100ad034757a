"""AdaFocusV3 (Wang et al., ECCV 2022) and the full-video baseline, wired from the components.

Shapes: video (B, C, T, H, W) float, normalised, full resolution. Centres (B, M, 3)
are (t, y, x) in video frames/pixels (cubecrop convention, DESIGN.md section 1).
Exits 0..M: exit 0 is the glance step p0, exit t follows cube t.

Training (`forward` + `loss`, paper Eq. 1): every exit, sum of cross-entropies.
Inference (`infer`): integer cubes in policy order, early exit on entropy, the batch
compacted after each stage to the videos still running.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import cubecrop
from adafocus import early_exit
from adafocus.classifier import ExitClassifier
from adafocus.flops import count_gmacs, meta_copy
from adafocus.glance import GlanceEncoder
from adafocus.local import LocalEncoder
from adafocus.model_config import MODES, ModelConfig
from adafocus.policy import CubePolicy, centre_spread, random_centres

# Which cube-crop path each training mode uses (see adafocus/local.py).
CROP_OF_MODE = {
    "deep_feature": "deep_feature",
    "pixel": "pixel",
    "random": "integer",
    "learned_t": "deep_feature",
    "learned_xy": "deep_feature",
}


@dataclass
class AdaFocusOutput:
    logits: List[torch.Tensor]  # M + 1 tensors (B, classes); exit 0 = glance
    centers: torch.Tensor  # (B, M, 3) (t, y, x) in video frames/pixels
    aux_logits: List[torch.Tensor] = field(default_factory=list)  # per-encoder heads, only when aux_loss_weight > 0

    def centre_spread(self) -> Dict[str, float]:
        """Std of the centres across the batch per axis: log it; 0 means the policy collapsed."""
        return centre_spread(self.centers)


@dataclass
class InferenceOutput:
    logits: torch.Tensor  # (B, classes) at the exit each video took
    exit_index: torch.Tensor  # (B,) long in [0, M]
    gflops: torch.Tensor  # (B,) float64 GMACs spent on each video
    centers: torch.Tensor  # (B, M, 3) the cubes' centres as cropped (after frame de-duplication)
    all_logits: Optional[torch.Tensor] = None  # (M + 1, B, classes) with return_all_exits


def check_video(video: torch.Tensor) -> None:
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a 5-D tensor (B, C, T, H, W), got {shape}")
    if not video.is_floating_point():
        raise TypeError(f"video must be a normalised floating-point tensor, got {video.dtype}")


def video_dims(video_shape: Sequence[int]) -> tuple:
    """(C, T, H, W) from a (B, C, T, H, W) or (C, T, H, W) shape."""
    dims = tuple(int(d) for d in video_shape)
    if len(dims) == 5:
        dims = dims[1:]
    if len(dims) != 4:
        raise ValueError(f"video_shape must be (B, C, T, H, W) or (C, T, H, W), got {tuple(video_shape)}")
    return dims


def classification_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """CE for class indices (B,); for multi-hot targets (B, classes): BCE if multi_label, else CE on the normalised target."""
    if target.dim() == 1:
        return F.cross_entropy(logits.float(), target)
    target = target.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    return F.cross_entropy(logits.float(), target / target.sum(1, keepdim=True).clamp(min=1e-12))


class AdaFocusV3(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.glance = GlanceEncoder(config)
        self.local = LocalEncoder(config)
        self.policy = CubePolicy(config, self.glance.out_channels, self.glance.grid_size())
        self.classifier = ExitClassifier(
            self.glance.out_channels, self.local.out_channels, config.num_cubes, config.num_classes, config.dropout
        )
        if config.aux_loss_weight > 0:
            self.glance_aux_head = nn.Linear(self.glance.out_channels, config.num_classes)
            self.local_aux_head = nn.Linear(self.local.out_channels, config.num_classes)
        # Early-exit thresholds eta_0..eta_M travel with the state dict (default: no early exit).
        self.register_buffer("exit_thresholds", early_exit.no_exit_thresholds(config.num_exits))
        self._gflops_cache: Dict[tuple, List[float]] = {}

    @property
    def num_exits(self) -> int:
        return self.config.num_exits

    def set_thresholds(self, thresholds) -> None:
        eta = early_exit.check_thresholds(thresholds, self.num_exits)
        self.exit_thresholds.copy_(eta.to(self.exit_thresholds.device))

    # ---- training -------------------------------------------------------------------------
    def cube_centres(self, glance_maps: torch.Tensor, video_size: Sequence[int], mode: str) -> torch.Tensor:
        """(B, M, 3) centres for `mode`: the policy's, random, or one axis group each."""
        b = glance_maps.shape[0]
        cube, m = self.config.cube_size, self.config.num_cubes
        if mode == "random":
            return random_centres(b, m, cube, video_size, device=glance_maps.device)
        learned = self.policy(glance_maps, video_size)
        if mode == "learned_t":
            random = random_centres(b, m, cube, video_size, device=glance_maps.device)
            return torch.cat((learned[..., :1], random[..., 1:]), dim=-1)
        if mode == "learned_xy":
            random = random_centres(b, m, cube, video_size, device=glance_maps.device)
            return torch.cat((random[..., :1], learned[..., 1:]), dim=-1)
        return learned

    def forward(self, video: torch.Tensor, mode: Optional[str] = None) -> AdaFocusOutput:
        """All exits for every video (training and analysis). mode: one of MODES, default config.mode."""
        check_video(video)
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        video_size = tuple(video.shape[2:])
        glance_maps = self.glance(video)  # (B, Cg, G, h, w)
        glance = glance_maps.mean(dim=(2, 3, 4))
        centres = self.cube_centres(glance_maps, video_size, mode)
        local = self.local(video, centres, crop=CROP_OF_MODE[mode])  # (B, M, Cl)
        output = AdaFocusOutput(self.classifier(glance, local), centres)
        if self.config.aux_loss_weight > 0:
            output.aux_logits = [
                self.glance_aux_head(glance_maps.mean(dim=(3, 4)).transpose(1, 2)).mean(1),
                self.local_aux_head(local),  # (B, M, classes)
            ]
        return output

    def loss(self, output: AdaFocusOutput, target: torch.Tensor) -> torch.Tensor:
        """Sum over exits of CE(p_t, y) (Eq. 1); target (B,) class indices or (B, classes) multi-hot."""
        multi = self.config.multi_label
        total = sum(classification_loss(logits, target, multi) for logits in output.logits)
        if output.aux_logits:
            glance_aux, local_aux = output.aux_logits
            per_cube = [classification_loss(local_aux[:, k], target, multi) for k in range(local_aux.shape[1])]
            total = total + self.config.aux_loss_weight * (
                classification_loss(glance_aux, target, multi) + sum(per_cube) / len(per_cube)
            )
        return total

    # ---- inference ------------------------------------------------------------------------
    def inference_centres(self, glance_maps: torch.Tensor, video_size: Sequence[int]) -> torch.Tensor:
        """Policy centres, with frame-wise cubes (Dt = 1) moved off frames an earlier cube took."""
        centres = self.cube_centres(glance_maps, video_size, self.config.mode).float()
        dt = self.config.cube_size[0]
        if dt == 1:
            frames = early_exit.frame_of_centre(centres[..., 0], dt, video_size[0])
            frames = early_exit.deduplicate_frames(frames, video_size[0])
            centres = torch.cat((frames.to(centres.dtype).unsqueeze(-1) + 0.5, centres[..., 1:]), dim=-1)
        return centres

    @torch.no_grad()
    def infer(self, video: torch.Tensor, thresholds=None, return_all_exits: bool = False) -> InferenceOutput:
        """Adaptive inference (call model.eval() first).

        thresholds (M+1,) entropy thresholds eta_t (default: the model's exit_thresholds).
        A video stops at the first exit t with entropy(p_t) <= eta_t; the last exit takes
        the rest. Batched: each stage runs only on the videos still running. With
        return_all_exits every video runs every exit (no saving) and all logits come back.
        """
        check_video(video)
        eta = early_exit.check_thresholds(self.exit_thresholds if thresholds is None else thresholds, self.num_exits)
        cost = torch.tensor(self.gflops_per_exit(video.shape), dtype=torch.float64)
        b, m = video.shape[0], self.config.num_cubes
        video_size = tuple(video.shape[2:])

        glance_maps = self.glance(video)
        glance = glance_maps.mean(dim=(2, 3, 4))
        logits0 = self.classifier.glance_exit(glance)
        if return_all_exits:
            centres = self.inference_centres(glance_maps, video_size)
            local = self.local(video, centres, crop="integer")
            all_logits = torch.stack(self.classifier(glance, local))
            picked, exit_index, gflops = early_exit.simulate(all_logits, eta, cost)
            return InferenceOutput(picked, exit_index.to(video.device), gflops, centres, all_logits)

        out_logits = logits0.new_empty(b, logits0.shape[1])
        exit_index = torch.full((b,), m, dtype=torch.long, device=video.device)
        centres = torch.zeros(b, m, 3, device=video.device)
        stops = early_exit.exit_mask(logits0, eta[0], last=m == 0)
        out_logits[stops] = logits0[stops]
        exit_index[stops] = 0
        running = torch.nonzero(~stops).flatten()  # indices into the batch
        if running.numel():
            # Compacted state of the videos still running. The video itself is not compacted: cropping
            # one cube from every video and keeping the running rows moves far less memory.
            run_glance = glance[running]
            centres[running] = self.inference_centres(glance_maps[running], video_size)
            local_max = None
            for t in range(1, m + 1):
                cube = cubecrop.crop_cubes_int(video, centres[:, t - 1 : t], self.config.cube_size)[running, 0]
                features = self.local.pool(self.local.encode(cube))
                local_max = features if local_max is None else torch.maximum(local_max, features)
                logits = self.classifier.local_exit(t, local_max, run_glance)
                stops = early_exit.exit_mask(logits, eta[t], last=t == m)
                done = running[stops]
                out_logits[done] = logits[stops].to(out_logits.dtype)
                exit_index[done] = t
                keep = ~stops
                if not bool(keep.any()):
                    break
                if not bool(keep.all()):
                    running, run_glance, local_max = running[keep], run_glance[keep], local_max[keep]
        return InferenceOutput(out_logits, exit_index, cost[exit_index.cpu()], centres)

    # ---- cost -----------------------------------------------------------------------------
    def component_gflops(self, video_shape: Sequence[int]) -> Dict[str, float]:
        """GMACs per video of each component: glance (fG on G frames), policy, local_cube (fL on one
        cube), and the heads glance_head / local_head (one exit's linear layer)."""
        c, t, h, w = video_dims(video_shape)
        meta = meta_copy(self)
        cfg = self.config
        r = cfg.glance_resolution
        grid = self.glance.grid_size()
        empty = lambda *shape: torch.empty(shape, device="meta")  # noqa: E731
        return {
            "glance": count_gmacs(meta.glance.encode, empty(1, c, cfg.glance_frames, r, r)),
            "policy": count_gmacs(
                lambda x: meta.policy(x, (t, h, w)), empty(1, self.glance.out_channels, *grid)
            ),
            "local_cube": count_gmacs(meta.local.encode, empty(1, c, *cfg.cube_size)),
            "glance_head": count_gmacs(meta.classifier.heads[0], empty(1, self.glance.out_channels)),
            "local_head": count_gmacs(
                meta.classifier.heads[1], empty(1, self.glance.out_channels + self.local.out_channels)
            ),
        }

    def gflops_per_exit(self, video_shape: Sequence[int]) -> List[float]:
        """Cumulative GMACs per video to reach exit 0..M. The policy is charged from exit 1 on, and not
        at all in random mode (which never runs it)."""
        dims = video_dims(video_shape)
        key = dims + (self.config.mode,)
        if key not in self._gflops_cache:
            parts = self.component_gflops(dims)
            policy = 0.0 if self.config.mode == "random" else parts["policy"]
            exits = [parts["glance"] + parts["glance_head"]]
            for t in range(1, self.num_exits):
                exits.append(exits[-1] + parts["local_cube"] + parts["local_head"] + (policy if t == 1 else 0.0))
            self._gflops_cache[key] = exits
        return list(self._gflops_cache[key])


class FullVideoBaseline(nn.Module):
    """The paper's "TSM+": the same fG (glance) and fL, fL on every frame at full resolution,
    no cubes, no policy; the pooled features of both are classified by one linear head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.glance = GlanceEncoder(config)
        self.local = LocalEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.glance.out_channels + self.local.out_channels, config.num_classes)
        self._gflops_cache: Dict[tuple, float] = {}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) -> logits (B, classes)."""
        check_video(video)
        glance = self.glance(video).mean(dim=(2, 3, 4))
        local = self.local.pool(self.local.encode(video))
        return self.head(self.dropout(torch.cat((local, glance), dim=1)))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, target, self.config.multi_label)

    def gflops(self, video_shape: Sequence[int]) -> float:
        """GMACs per video."""
        c, t, h, w = key = video_dims(video_shape)
        if key not in self._gflops_cache:
            meta = meta_copy(self)
            self._gflops_cache[key] = count_gmacs(meta, torch.empty(1, c, t, h, w, device="meta"))
        return self._gflops_cache[key]
