"""Siamese fully convolutional change-detection network (FC-Siam-conc/diff style).

The network never downsamples and never normalises over space or batch, so every output pixel depends
only on a fixed (``receptive_field`` x ``receptive_field``) input window: a scene predicted tile by tile
with a halo of at least ``receptive_field // 2`` pixels equals the scene predicted in one piece.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SiameseChangeNet"]


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 'same' convolution followed by GELU (pixel-local, batch-independent)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.GELU())


class SiameseChangeNet(nn.Module):
    """Weight-tied encoder applied to both dates, fused as ``[f_before, f_after, |f_after - f_before|]``.

    ``forward(before, after) == decode(encode(before), encode(after))``; inference over a time series
    encodes each period once (``models.predict.predict_change_series``).

    Args:
        in_channels: channels per date (bands, plus the validity channel where the card asks for it).
        n_classes: number of output classes (change-type codes 0..n_classes-1).
        width: feature channels of the encoder and the head.
        depth: number of 3x3 convolutions in the encoder (>= 1).
        season_channels: 2 to read each date's ``season.season_planes`` (sine and cosine of its period's
            middle day of year) after its ``in_channels`` image channels, 0 for none.

    Input: ``before`` and ``after`` as float32 ``(N, in_channels + season_channels, H, W)``, normalised.
    Output: logits ``(N, n_classes, H, W)``.
    """

    def __init__(
        self, in_channels: int, n_classes: int = 5, width: int = 32, depth: int = 4, season_channels: int = 0
    ) -> None:
        super().__init__()
        if min(in_channels, width, depth) < 1 or n_classes < 2 or season_channels not in (0, 2):
            raise ValueError(
                f"SiameseChangeNet needs in_channels, width, depth >= 1, n_classes >= 2 and season_channels "
                f"0 or 2, got in_channels={in_channels}, n_classes={n_classes}, width={width}, "
                f"depth={depth}, season_channels={season_channels}"
            )
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.width = width
        self.depth = depth
        self.season_channels = season_channels
        layers = [_conv_block(in_channels + season_channels, width)]
        layers += [_conv_block(width, width) for _ in range(depth - 1)]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Sequential(_conv_block(3 * width, width), nn.Conv2d(width, n_classes, kernel_size=1))

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in the model card (``season_channels`` only when set, so the
        cards of models without a season input stay as they were)."""
        config = {"in_channels": self.in_channels, "n_classes": self.n_classes, "width": self.width}
        config["depth"] = self.depth
        if self.season_channels:
            config["season_channels"] = self.season_channels
        return config

    @property
    def receptive_field(self) -> int:
        """Side (pixels) of the input window that one output pixel sees, from the conv layers.

        Encoder and head are applied in sequence and no layer strides, so each convolution widens the
        field by ``(kernel - 1) * dilation``.
        """
        field = 1
        for module in (*self.encoder.modules(), *self.head.modules()):
            if isinstance(module, nn.Conv2d):
                if module.stride != (1, 1):
                    raise AssertionError("SiameseChangeNet must not stride")
                field += (module.kernel_size[0] - 1) * module.dilation[0]
        return field

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, width, H, W)`` of normalised images ``(N, in_channels + season_channels, H, W)``
        (one date each).

        The encoder is weight-tied across dates, so a period's features can be computed once and reused
        by both transitions that share it (``decode`` takes them in any pairing).
        """
        return self.encoder(x)

    def decode(self, f_before: torch.Tensor, f_after: torch.Tensor) -> torch.Tensor:
        """Change logits ``(N, n_classes, H, W)`` from the features of two dates (``encode`` output)."""
        if f_before.shape != f_after.shape:
            raise ValueError(
                f"features before {tuple(f_before.shape)} and after {tuple(f_after.shape)} differ in shape"
            )
        return self.head(torch.cat([f_before, f_after, (f_after - f_before).abs()], dim=1))

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Return change logits ``(N, n_classes, H, W)`` for a pair of normalised images."""
        if before.shape != after.shape:
            raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
        # One encoder pass over both dates (weight tying, and one large conv instead of two small ones).
        f_before, f_after = self.encode(torch.cat([before, after], dim=0)).chunk(2, dim=0)
        return self.decode(f_before, f_after)
