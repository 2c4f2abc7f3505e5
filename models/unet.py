"""``UNetBase``: the U-Net skeleton shared by the VHR networks (``SiameseDiffUNet``, ``VhrLandCoverUNet``).

A full-resolution stem of ``width // 2`` channels (one 3x3 convolution + batch norm + GELU block), then
``levels`` max-pooled stages of ``width * 2**(l-1)`` channels (two blocks each, 2x2 pools in ceil mode,
so any image size works); the decoder upsamples (bilinear x2), concatenates a skip of that scale and
applies one block per scale (two below full resolution); a 1x1 convolution gives one logit per class.
Subclasses say what the decoder starts from and which skips it reads (one image's features, or the
difference of two dates'); the module names ``stem``, ``down``, ``up`` and ``head`` are the keys of the
shipped safetensors weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POOL", "UNetBase", "conv_block"]

#: Side (px) of the max-pooling window and of the bilinear upsampling factor.
POOL = 2


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 'same' convolution, batch norm (a per-channel affine map in eval mode: pixel-local and
    batch-independent at inference), GELU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    )


class UNetBase(nn.Module):
    """Encoder, decoder and head of a U-Net; ``forward`` is the subclass's.

    Args:
        in_channels: input channels per image (3 for RGB).
        n_classes: output classes.
        width: channels of the first pooled stage (>= 2, even); the stem has ``width // 2``.
        levels: pooled stages (>= 1); the coarsest cell is ``2**levels`` px.
    """

    #: Multiples of the deepest features' channels the decoder's first stage takes (2: a siamese
    #: network's difference and sum).
    bottleneck_inputs: int = 1

    def __init__(self, in_channels: int, n_classes: int, width: int, levels: int) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 2 or width % 2 or levels < 1:
            raise ValueError(
                f"{type(self).__name__} needs in_channels >= 1, n_classes >= 2, an even width >= 2 and "
                f"levels >= 1, got in_channels={in_channels}, n_classes={n_classes}, width={width}, "
                f"levels={levels}"
            )
        self.in_channels, self.n_classes, self.width, self.levels = in_channels, n_classes, width, levels
        ch = self.channels
        self.stem = conv_block(in_channels, ch[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv_block(ch[level - 1], ch[level]), conv_block(ch[level], ch[level]))
            for level in range(1, levels + 1)
        )
        self.up = nn.ModuleList(self._decoder_stage(level) for level in range(levels))
        self.head = nn.Conv2d(ch[0], n_classes, kernel_size=1)

    def _decoder_stage(self, level: int) -> nn.Sequential:
        """Block(s) of decoder scale ``level``: input = upsampled coarser output + this scale's skip."""
        ch = self.channels
        coarser = self.bottleneck_inputs * ch[level + 1] if level + 1 == self.levels else ch[level + 1]
        blocks = [conv_block(coarser + ch[level], ch[level])]
        if level > 0:
            blocks.append(conv_block(ch[level], ch[level]))
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
        """Side (px) of the input window an output pixel can depend on (theoretical, deepest path).

        Each 3x3 convolution at a scale of ``j`` px per cell widens the field by ``2 j``, each 2x2 pool by
        ``j`` before the cell doubles, and each bilinear x2 upsampling by one coarse cell. The effective
        field is much smaller; tiling uses blending rather than this bound.
        """
        field, jump = 1 + 2, 1  # stem
        for _ in range(self.levels):
            field += (POOL - 1) * jump
            jump *= POOL
            field += 2 * 2 * jump
        for level in reversed(range(self.levels)):
            field += jump  # bilinear upsampling reads two coarse cells
            jump //= POOL
            field += 2 * jump * (2 if level > 0 else 1)
        return field  # the 1x1 head adds nothing

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of one image per scale, full resolution first: ``levels + 1`` tensors
        ``(N, channels[l], ceil(H / 2**l), ceil(W / 2**l))``."""
        features = [self.stem(x)]
        for stage in self.down:
            features.append(stage(F.max_pool2d(features[-1], POOL, ceil_mode=True)))
        return features

    def decode_skips(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``(N, n_classes, H, W)`` from the bottleneck input ``x`` and one skip per scale (full
        resolution first; the deepest is not read): upsample, crop to the skip, concatenate, block."""
        for level in reversed(range(self.levels)):
            skip = skips[level]
            x = F.interpolate(x, scale_factor=POOL, mode="bilinear", align_corners=False)
            x = x[..., : skip.shape[-2], : skip.shape[-1]]
            x = self.up[level](torch.cat([x, skip], dim=1))
        return self.head(x)
