"""``VhrLandCoverUNet``: the single-branch U-Net of the VHR land-cover model, network only.

The encoder and decoder blocks of ``SiameseDiffUNet`` (``models.siamese_diff``) in one branch: a
full-resolution stem of ``width // 2`` channels (one 3x3 convolution + batch norm + GELU block), then
``levels`` max-pooled stages of ``width * 2**(l-1)`` channels (two blocks each); the decoder upsamples
(bilinear x2), concatenates the encoder features of that scale (U-Net skips) and applies one block per
scale (two below full resolution); a 1x1 convolution gives one logit per class. The coarsest cell is
``2**levels`` px (16 m at 1 m with the shipped ``levels=4``): enough context to tell a roof from a road
of the same asphalt grey. Preprocessing, inference and tiling: ``models.vhr_landcover``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .siamese_diff import POOL, _block

__all__ = ["POOL", "VhrLandCoverUNet"]


class VhrLandCoverUNet(nn.Module):
    """U-Net segmentation of one VHR RGB image into land-cover classes.

    Args:
        in_channels: input channels (3: red, green, blue).
        n_classes: output classes (5: LandCover.ai's).
        width: channels of the first pooled stage (>= 2, even); the stem has ``width // 2``.
        levels: pooled stages (>= 1); the coarsest cell is ``2**levels`` px.

    Input: float32 ``(N, in_channels, H, W)`` normalised (``models.predict.preprocess``); any H, W >= 1.
    Output: logits float32 ``(N, n_classes, H, W)``.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 5, width: int = 16, levels: int = 4) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 2 or width % 2 or levels < 1:
            raise ValueError(
                f"VhrLandCoverUNet needs in_channels >= 1, n_classes >= 2, an even width >= 2 and "
                f"levels >= 1, got in_channels={in_channels}, n_classes={n_classes}, width={width}, "
                f"levels={levels}"
            )
        self.in_channels, self.n_classes, self.width, self.levels = in_channels, n_classes, width, levels
        ch = self.channels
        self.stem = _block(in_channels, ch[0])
        self.down = nn.ModuleList(
            nn.Sequential(_block(ch[level - 1], ch[level]), _block(ch[level], ch[level]))
            for level in range(1, levels + 1)
        )
        self.up = nn.ModuleList(self._decoder_stage(level) for level in range(levels))
        self.head = nn.Conv2d(ch[0], n_classes, kernel_size=1)

    def _decoder_stage(self, level: int) -> nn.Sequential:
        """Block(s) of decoder scale ``level``: input = upsampled coarser output + this scale's skip."""
        ch = self.channels
        blocks = [_block(ch[level + 1] + ch[level], ch[level])]
        if level > 0:
            blocks.append(_block(ch[level], ch[level]))
        return nn.Sequential(*blocks)

    @property
    def channels(self) -> tuple[int, ...]:
        """Feature channels per scale, full resolution first (``levels + 1`` entries)."""
        return (self.width // 2, *(self.width * 2 ** (level - 1) for level in range(1, self.levels + 1)))

    @property
    def cell(self) -> int:
        """Side (px) of the coarsest pooling cell."""
        return int(POOL**self.levels)

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in the model card."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "width": self.width,
            "levels": self.levels,
        }

    @property
    def receptive_field(self) -> int:
        """Side (px) of the input window an output pixel can depend on (theoretical, deepest path; the
        same count as ``SiameseDiffUNet.receptive_field``, whose blocks this network has)."""
        field, jump = 1 + 2, 1  # stem
        for _ in range(self.levels):
            field += (POOL - 1) * jump
            jump *= POOL
            field += 2 * 2 * jump
        for level in reversed(range(self.levels)):
            field += jump  # bilinear upsampling reads two coarse cells
            jump //= POOL
            field += 2 * jump * (2 if level > 0 else 1)
        return field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes, H, W)`` of normalised images ``(N, in_channels, H, W)``."""
        features = [self.stem(x)]
        for stage in self.down:
            features.append(stage(F.max_pool2d(features[-1], POOL, ceil_mode=True)))
        y = features[-1]
        for level in reversed(range(self.levels)):
            skip = features[level]
            y = F.interpolate(y, scale_factor=POOL, mode="bilinear", align_corners=False)
            y = self.up[level](torch.cat([y[..., : skip.shape[-2], : skip.shape[-1]], skip], dim=1))
        return self.head(y)
