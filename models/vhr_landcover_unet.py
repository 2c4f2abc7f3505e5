"""``VhrLandCoverUNet``: the single-branch U-Net of the VHR land-cover model, network only.

The ``UNetBase`` skeleton (``models.unet``, shared with ``SiameseDiffUNet``) in one branch: a
full-resolution stem of ``width // 2`` channels (one 3x3 convolution + batch norm + GELU block), then
``levels`` max-pooled stages of ``width * 2**(l-1)`` channels (two blocks each); the decoder upsamples
(bilinear x2), concatenates the encoder features of that scale (U-Net skips) and applies one block per
scale (two below full resolution); a 1x1 convolution gives one logit per class. The coarsest cell is
``2**levels`` px (16 m at 1 m with the shipped ``levels=4``): enough context to tell a roof from a road
of the same asphalt grey. Preprocessing, inference and tiling: ``models.vhr_landcover``.
"""

from __future__ import annotations

import torch

from .unet import POOL, UNetBase

__all__ = ["POOL", "VhrLandCoverUNet"]


class VhrLandCoverUNet(UNetBase):
    """U-Net segmentation of one VHR RGB image into land-cover classes (the ``UNetBase`` skeleton; the
    decoder's skips are the image's own features).

    Args:
        in_channels: input channels (3: red, green, blue).
        n_classes: output classes (5: LandCover.ai's).
        width: channels of the first pooled stage (>= 2, even); the stem has ``width // 2``.
        levels: pooled stages (>= 1); the coarsest cell is ``2**levels`` px.

    Input: float32 ``(N, in_channels, H, W)`` normalised (``models.predict.preprocess``); any H, W >= 1.
    Output: logits float32 ``(N, n_classes, H, W)``.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 5, width: int = 16, levels: int = 4) -> None:
        super().__init__(in_channels, n_classes, width, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes, H, W)`` of normalised images ``(N, in_channels, H, W)``."""
        features = self.encode(x)
        return self.decode_skips(features[-1], features)
