"""``SiameseDiffUNet``: the siamese U-Net of the VHR change model (FC-Siam-diff style), network only.

One weight-tied encoder per date (a full-resolution stem, then ``levels`` max-pooled stages) and a decoder
over the **absolute differences** of the two dates' features at every scale (Daudt et al. 2018); the
bottleneck also sees the sum of both dates' deepest features. Every decoder input is symmetric in the two
dates, so ``forward(a, b) == forward(b, a)``. Inference, tiling and preprocessing: ``models.vhr_change``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POOL", "SiameseDiffUNet"]

#: Side (px) of the max-pooling window and of the bilinear upsampling factor.
POOL = 2


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 'same' convolution, batch norm (a per-channel affine map in eval mode: pixel-local and
    batch-independent at inference), GELU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    )


class SiameseDiffUNet(nn.Module):
    """Weight-tied U-Net encoder per date; decoder over ``|f_after - f_before|`` at every scale.

    Channels: ``width // 2`` at full resolution (one 3x3 block), then ``width * 2**(l-1)`` at 1/2**l for
    stage ``l = 1..levels`` (two 3x3 blocks after a 2x2 max pool, ceil mode, so any image size works).
    The decoder upsamples (bilinear, x2), concatenates the skip difference of that scale and applies one
    block per scale (two below full resolution); a 1x1 convolution gives the class logits.

    Args:
        in_channels: channels per date (3 for RGB).
        n_classes: output classes (2: no change, change).
        width: channels of the first pooled stage (>= 2, even).
        levels: pooled stages (>= 1); the coarsest cell is ``2**levels`` px.

    Input: ``before`` and ``after`` float32 ``(N, in_channels, H, W)``, normalised; any ``H, W >= 1``.
    Output: logits ``(N, n_classes, H, W)``.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width: int = 16, levels: int = 4) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 2 or width % 2 or levels < 1:
            raise ValueError(
                f"SiameseDiffUNet needs in_channels >= 1, n_classes >= 2, an even width >= 2 and "
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
        coarser = 2 * ch[level + 1] if level + 1 == self.levels else ch[level + 1]
        blocks = [_block(coarser + ch[level], ch[level])]
        if level > 0:
            blocks.append(_block(ch[level], ch[level]))
        return nn.Sequential(*blocks)

    @property
    def channels(self) -> tuple[int, ...]:
        """Feature channels per scale, full resolution first (``levels + 1`` entries)."""
        return (self.width // 2, *(self.width * 2 ** (level - 1) for level in range(1, self.levels + 1)))

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
        field is much smaller; tiling uses blending rather than this bound (see the module docstring).
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
        """Features of one date per scale, full resolution first: ``levels + 1`` tensors
        ``(N, channels[l], ceil(H / 2**l), ceil(W / 2**l))``."""
        features = [self.stem(x)]
        for stage in self.down:
            features.append(stage(F.max_pool2d(features[-1], POOL, ceil_mode=True)))
        return features

    def decode(self, f_before: list[torch.Tensor], f_after: list[torch.Tensor]) -> torch.Tensor:
        """Change logits ``(N, n_classes, H, W)`` from two dates' ``encode`` outputs (in either order)."""
        if [f.shape for f in f_before] != [f.shape for f in f_after]:
            raise ValueError("features of the two dates differ in shape")
        diffs = [(a - b).abs() for a, b in zip(f_after, f_before, strict=True)]
        x = torch.cat([diffs[-1], f_after[-1] + f_before[-1]], dim=1)
        for level in reversed(range(self.levels)):
            skip = diffs[level]
            x = F.interpolate(x, scale_factor=POOL, mode="bilinear", align_corners=False)
            x = x[..., : skip.shape[-2], : skip.shape[-1]]
            x = self.up[level](torch.cat([x, skip], dim=1))
        return self.head(x)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change logits ``(N, n_classes, H, W)`` of a pair of normalised images."""
        if before.shape != after.shape:
            raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
        both = self.encode(torch.cat([before, after], dim=0))
        pairs = [f.chunk(2, dim=0) for f in both]
        return self.decode([b for b, _ in pairs], [a for _, a in pairs])
