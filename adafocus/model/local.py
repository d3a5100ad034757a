"""Local encoder fL: the high-capacity network on the cubes, with the three ways to crop them.

- `deep_feature` (training, the paper's Eq. 5-6): an integer crop one feature cell
  larger per axis (no gradient), fL on it, then cubecrop.feature_offset_crop cuts the
  cube's features out at the true offset, so the center's gradient comes from
  differences of fL's deep features.
- `pixel` (training, AdaFocusV2-style): cubecrop.crop_cubes on the video (trilinear,
  gradient to the centers from pixel differences, frames mixed in time).
- `integer` (inference, and the random-policy ablation): cubecrop.crop_cubes_int,
  the cube's exact voxels, no gradient to the centers.

fL is a 2D backbone: temporal stride 1, spatial stride s, so a cube (Dt, Dh, Dw)
gives (Dt, Dh/s, Dw/s) feature cells. Every path returns the cube features pooled
over (t, h, w): (B, M, Cl).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import cubecrop
from adafocus.model.backbones import ClipEncoder
from adafocus.model.config import ModelConfig


class LocalEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.encoder = ClipEncoder.from_config(config.local, config.tsm_fold_div)
        self.cube_size = tuple(config.cube_size)
        s = self.encoder.stride
        if config.cube_size[1] % s or config.cube_size[2] % s:
            raise ValueError(
                f"cube_size {tuple(config.cube_size)}: the spatial sides must be multiples of the local "
                f"backbone's stride {s} (the deep-feature crop works in whole feature cells)"
            )

    @property
    def out_channels(self) -> int:
        return self.encoder.out_channels

    @property
    def feature_stride(self) -> tuple:
        """Input frames/pixels per feature cell along (t, y, x)."""
        return (1, self.encoder.stride, self.encoder.stride)

    def encode(self, cubes: torch.Tensor) -> torch.Tensor:
        """cubes (N, C, Dt, Dh, Dw) -> feature maps (N, Cl, Dt, Dh/s, Dw/s)."""
        return self.encoder(cubes)

    @staticmethod
    def pool(maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=(2, 3, 4))

    def _encode_cubes(self, cubes: torch.Tensor) -> torch.Tensor:
        """(B, M, C, Dt, Dh, Dw) -> pooled (B, M, Cl)."""
        b, m = cubes.shape[:2]
        return self.pool(self.encode(cubes.flatten(0, 1))).view(b, m, -1)

    def deep_feature(self, video: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        b, m = centers.shape[:2]
        flat = centers.reshape(b * m, 3)
        with torch.no_grad():
            source = self._room_for_enlarged_window(video.detach())
            window = cubecrop.enlarged_window(flat, self.cube_size, self.feature_stride, source.shape[2:])
            enlarged = cubecrop.crop_enlarged(source, window)  # (B, M, C, Dt+1, Dh+s, Dw+s)
        maps = self.encode(enlarged.flatten(0, 1))  # (B*M, Cl, Dt+1, Dh/s+1, Dw/s+1)
        cube_maps = cubecrop.feature_offset_crop(maps, flat, window.origin, self.feature_stride)
        return self.pool(cube_maps).view(b, m, -1)

    def _room_for_enlarged_window(self, video: torch.Tensor) -> torch.Tensor:
        """The video, edge-padded at the end of any axis the enlarged window (D + s) would not fit in.

        Only when a cube spans a whole axis (e.g. Dt = T): its center is then clamped to E/2,
        the window starts at 0 and the cube's features sit exactly on cells 0..n-1, so the
        padded cell gets weight 0 (and that axis has nothing to learn).
        """
        shortfall = [max(0, d + s - e) for d, s, e in zip(self.cube_size, self.feature_stride, video.shape[2:])]
        if not any(shortfall):
            return video
        t, h, w = shortfall
        return F.pad(video, (0, w, 0, h, 0, t), mode="replicate")

    def pixel(self, video: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        return self._encode_cubes(cubecrop.crop_cubes(video, centers, self.cube_size))

    def integer(self, video: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        return self._encode_cubes(cubecrop.crop_cubes_int(video, centers.detach(), self.cube_size))

    def forward(self, video: torch.Tensor, centers: torch.Tensor, crop: str = "integer") -> torch.Tensor:
        """video (B, C, T, H, W) float, centers (B, M, 3) -> pooled cube features (B, M, Cl)."""
        if crop not in ("deep_feature", "pixel", "integer"):
            raise ValueError(f"crop must be deep_feature, pixel or integer, got {crop!r}")
        return getattr(self, crop)(video, centers)
