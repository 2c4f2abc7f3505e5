"""``SiameseDiffUNet``: the siamese U-Net of the VHR change model (FC-Siam-diff style), network only.

One weight-tied encoder per date (a full-resolution stem, then ``levels`` max-pooled stages) and a decoder
over the **absolute differences** of the two dates' features at every scale (Daudt et al. 2018); the
bottleneck also sees the sum of both dates' deepest features. Every decoder input is symmetric in the two
dates, so ``forward(a, b) == forward(b, a)``. Inference, tiling and preprocessing: ``models.vhr_change``.
"""

from __future__ import annotations

import torch

from .unet import POOL, UNetBase

__all__ = ["POOL", "SiameseDiffUNet"]


class SiameseDiffUNet(UNetBase):
    """Weight-tied U-Net encoder per date; decoder over ``|f_after - f_before|`` at every scale.

    The ``UNetBase`` skeleton: ``width // 2`` channels at full resolution (one 3x3 block), then
    ``width * 2**(l-1)`` at 1/2**l for stage ``l = 1..levels``; the decoder's skips are the two dates'
    feature differences and its bottleneck input the difference and the sum of their deepest features.

    Args:
        in_channels: channels per date (3 for RGB).
        n_classes: output classes (2: no change, change).
        width: channels of the first pooled stage (>= 2, even).
        levels: pooled stages (>= 1); the coarsest cell is ``2**levels`` px.

    Input: ``before`` and ``after`` float32 ``(N, in_channels, H, W)``, normalised; any ``H, W >= 1``.
    Output: logits ``(N, n_classes, H, W)``.
    """

    bottleneck_inputs = 2

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width: int = 16, levels: int = 4) -> None:
        super().__init__(in_channels, n_classes, width, levels)

    def decode(self, f_before: list[torch.Tensor], f_after: list[torch.Tensor]) -> torch.Tensor:
        """Change logits ``(N, n_classes, H, W)`` from two dates' ``encode`` outputs (in either order)."""
        if [f.shape for f in f_before] != [f.shape for f in f_after]:
            raise ValueError("features of the two dates differ in shape")
        diffs = [(a - b).abs() for a, b in zip(f_after, f_before, strict=True)]
        return self.decode_skips(torch.cat([diffs[-1], f_after[-1] + f_before[-1]], dim=1), diffs)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change logits ``(N, n_classes, H, W)`` of a pair of normalised images."""
        if before.shape != after.shape:
            raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
        both = self.encode(torch.cat([before, after], dim=0))
        pairs = [f.chunk(2, dim=0) for f in both]
        return self.decode([b for b, _ in pairs], [a for _, a in pairs])
