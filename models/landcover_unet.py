"""``LandCoverUNet``: the small segmentation U-Net of the S2 land-cover models, network only.

A full-resolution stem and ``levels`` max-pooled encoder stages (two 3x3 convolution + batch norm + GELU
blocks each), a decoder that upsamples (bilinear x2) and concatenates the encoder features of each scale
(U-Net skip connections), and a 1x1 head giving one logit per class. Spatial context matters for
built-up land and field patterns, so the coarsest cell is ``2**levels`` px (8 px = 80 m at 10 m with
the shipped ``levels=3``). Preprocessing, inference and tiling: ``models.landcover``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .unet import POOL, conv_block

__all__ = ["POOL", "LandCoverUNet"]


def _double(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_block(in_channels, out_channels), conv_block(out_channels, out_channels))


class LandCoverUNet(nn.Module):
    """U-Net segmentation of one composite period (with its preceding periods) into land-cover classes.

    Channels: ``width`` at full resolution, ``width * 2**l`` at 1/2**l for stage ``l = 1..levels``
    (2x2 max pool in ceil mode, so any image size works).

    Args:
        in_channels: input channels of one period (6 S2 bands + 1 validity channel for the shipped models).
        n_classes: output classes.
        width: channels at full resolution (>= 1).
        levels: pooled stages (>= 1); the coarsest cell is ``2**levels`` px.
        periods: consecutive periods stacked as channels (>= 1): the mapped period and the ``periods - 1``
            periods before it, oldest first (``models.landcover.period_history``).

    Input: float32 ``(N, periods * in_channels, H, W)``, normalised (``models.predict.preprocess``); any
    H, W >= 1. Output: logits float32 ``(N, n_classes, H, W)``.
    """

    def __init__(
        self, in_channels: int = 7, n_classes: int = 6, width: int = 12, levels: int = 3, periods: int = 1
    ) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 1 or levels < 1 or periods < 1:
            raise ValueError(
                f"LandCoverUNet needs in_channels >= 1, n_classes >= 2, width >= 1, levels >= 1 and "
                f"periods >= 1, got in_channels={in_channels}, n_classes={n_classes}, width={width}, "
                f"levels={levels}, periods={periods}"
            )
        self.in_channels, self.n_classes, self.width, self.levels = in_channels, n_classes, width, levels
        self.periods = periods
        ch = self.channels
        self.stem = _double(in_channels * periods, ch[0])
        self.down = nn.ModuleList(_double(ch[level - 1], ch[level]) for level in range(1, levels + 1))
        self.up = nn.ModuleList(_double(ch[level + 1] + ch[level], ch[level]) for level in range(levels))
        self.head = nn.Conv2d(ch[0], n_classes, kernel_size=1)

    @property
    def channels(self) -> tuple[int, ...]:
        """Feature channels per scale, full resolution first (``levels + 1`` entries)."""
        return tuple(self.width * POOL**level for level in range(self.levels + 1))

    @property
    def cell(self) -> int:
        """Side (px) of the coarsest pooling cell: windows that start on multiples of it see the same
        pooling grid as a whole-image pass."""
        return int(POOL**self.levels)

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in the model card (``periods`` only when above 1, so the
        cards of one-period models keep their keys)."""
        config = {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "width": self.width,
            "levels": self.levels,
        }
        return config if self.periods == 1 else {**config, "periods": self.periods}

    @property
    def receptive_field(self) -> int:
        """Side (px) of the input window an output pixel can depend on (theoretical, deepest path).

        Each 3x3 convolution at ``j`` px per cell widens the field by ``2 j``, each 2x2 pool by ``j``
        before the cell doubles, each bilinear x2 upsampling by one coarse cell. The effective field is
        much smaller; tiling blends overlapping windows (``models.landcover``).
        """
        field, jump = 1 + 2 * 2, 1  # stem: two 3x3 convolutions
        for _ in range(self.levels):
            field += (POOL - 1) * jump
            jump *= POOL
            field += 2 * 2 * jump
        for _ in range(self.levels):
            field += jump  # bilinear upsampling reads two coarse cells
            jump //= POOL
            field += 2 * 2 * jump
        return field  # the 1x1 head adds nothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes, H, W)`` of normalised images ``(N, periods * in_channels, H, W)``."""
        features = [self.stem(x)]
        for stage in self.down:
            features.append(stage(F.max_pool2d(features[-1], POOL, ceil_mode=True)))
        y = features[-1]
        for level in reversed(range(self.levels)):
            skip = features[level]
            y = F.interpolate(y, scale_factor=POOL, mode="bilinear", align_corners=False)
            y = self.up[level](torch.cat([y[..., : skip.shape[-2], : skip.shape[-1]], skip], dim=1))
        return self.head(y)
