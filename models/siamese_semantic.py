"""Semantic change detection over one siamese design: binary change, from-class and to-class heads.

``SiameseSemanticNet`` is the ``SiameseChangeNet`` design (a weight-tied, never-striding encoder of 3x3
convolutions + GELU applied to both dates, fused as ``[f_before, f_after, |f_after - f_before|]``) with
three heads, as in SECOND / ChangeMamba's semantic change (SCD) setups:

* ``change``: 2 logits (no change, change) per pixel;
* ``from``: the land cover at date 1 (``n_classes - 1`` logits, the archive's ``LANDCOVER`` codes 1..8);
* ``to``: the land cover at date 2 (same classes).

The change head is ``SiameseChangeNet``'s (3x3 conv + GELU, 1x1 classifier); the from and to heads are
1x1 classifiers on one shared 3x3 conv + GELU trunk over the same fused features.

The **conditional** variant (``conditional=1``, MapFormer's idea) also takes the pre-change land-cover
map (one-hot per pixel, at date 1): a 3x3 convolution + GELU embeds it and its features join the fused
features of every head, so the network only has to decide what became of a known class.

**Season** (``season_channels=2``): each date's input also carries two constant planes, the sine and
cosine of its period's mid day of year (``season_planes``), so the same spectral move can mean
different things in different months (bare -> green is ordinary maize in May -> June and a crop
rotation in July -> August). ``season_channels=0`` models take no date input.

Outputs are not symmetric in the dates: ``forward(a, b)`` and ``forward(b, a)`` differ (the from/to heads
swap roles and seasonal development has a direction). No layer strides or normalises over space or
batch, so a pixel depends only on its ``receptive_field`` window (11 px for depth 4): tiled inference
with a halo of ``receptive_field // 2`` equals whole-image inference to float rounding.

Map legend (``SEMANTIC_CLASSES``): class 0 is "no change" and 1..8 are the ``LANDCOVER`` codes, so a
from/to map of SECOND (non-change pixels 0 in both maps) uses the archive's own codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from eowatch.errors import InputError, ModelError
from eowatch.legend import LANDCOVER

from .card import ModelCard
from .engine import EngineConfig, WindowPredictor, default_config, fuse_conv_gelu, module_device, run_tiled
from .predict import SEMANTIC_TASK, check_bands_and_resolution, preprocess, with_season
from .season import season_planes
from .siamese import _conv_block
from .weights import LoadedModel

__all__ = [
    "LANDCOVER_COLOURS",
    "SEMANTIC_ARCHITECTURE",
    "SEMANTIC_ARCHITECTURE_ARGS",
    "SEMANTIC_CLASSES",
    "SEMANTIC_TASK",
    "SemanticLogits",
    "SemanticProbs",
    "SiameseSemanticNet",
    "check_semantic_inputs",
    "decode_semantic",
    "one_hot_landcover",
    "predict_semantic_series",
    "season_planes",
]

SEMANTIC_ARCHITECTURE = "SiameseSemanticNet"
#: Constructor arguments a ``SiameseSemanticNet`` card gives (``architecture_args`` keys).
SEMANTIC_ARCHITECTURE_ARGS: frozenset[str] = frozenset(
    {"in_channels", "n_classes", "width", "depth", "conditional", "season_channels"}
)
#: Display colours (RGB 0-255) of the archive's land-cover classes (crop colours as ``crop-type-ltae``,
#: the others WorldCover-like).
LANDCOVER_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (0, 100, 200),
    2: (0, 100, 0),
    3: (110, 190, 80),
    4: (214, 170, 50),
    5: (255, 120, 20),
    6: (250, 235, 0),
    7: (250, 0, 0),
    8: (180, 180, 180),
}
#: Classes of the from/to maps: 0 no change, then the ``LANDCOVER`` codes 1..8 (all eight kept apart: a
#: crop rotation is a change between crop classes, which grouped crops could not express).
SEMANTIC_CLASSES: dict[int, str] = {0: "no_change", **{c: LANDCOVER[c] for c in LANDCOVER_COLOURS}}


class SemanticLogits(NamedTuple):
    """The three heads' logits, each ``(N, K, H, W)`` float."""

    change: torch.Tensor
    """``K = 2``: no change, change."""
    from_class: torch.Tensor
    """``K = n_classes - 1``: land cover at date 1 (index ``i`` is ``LANDCOVER`` code ``i + 1``)."""
    to_class: torch.Tensor
    """``K = n_classes - 1``: land cover at date 2."""


def _head(in_channels: int, width: int, n_out: int) -> nn.Sequential:
    """3x3 conv + GELU then a 1x1 classifier (the head of ``SiameseChangeNet``)."""
    return nn.Sequential(_conv_block(in_channels, width), nn.Conv2d(width, n_out, kernel_size=1))


class SiameseSemanticNet(nn.Module):
    """Weight-tied siamese encoder with binary change, from-class and to-class heads.

    Args:
        in_channels: channels per date (bands plus the validity channel).
        n_classes: classes of the from/to maps including "no change" (9: no change + 8 land-cover
            classes); the from/to heads have ``n_classes - 1`` logits.
        width: feature channels of the encoder and the heads.
        depth: 3x3 convolutions in the encoder (>= 1).
        conditional: 1 to take the date-1 land-cover map (one-hot, ``n_classes - 1`` channels) as input.
        season_channels: 2 to take each date's ``season_planes`` after its image channels, 0 for none.

    Input: ``before``, ``after`` float32 ``(N, in_channels + season_channels, H, W)`` normalised as the
    card says, then the date's season planes;
    ``condition`` float32 ``(N, n_classes - 1, H, W)`` one-hot land cover at date 1 (conditional only).
    Output: ``SemanticLogits``.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int = 9,
        width: int = 32,
        depth: int = 4,
        conditional: int = 0,
        season_channels: int = 0,
    ) -> None:
        super().__init__()
        if (
            min(in_channels, width, depth) < 1
            or n_classes < 3
            or conditional not in (0, 1)
            or (season_channels not in (0, 2))
        ):
            raise ValueError(
                "SiameseSemanticNet needs in_channels, width, depth >= 1, n_classes >= 3, conditional "
                f"0 or 1 and season_channels 0 or 2, got in_channels={in_channels}, n_classes={n_classes}, "
                f"width={width}, depth={depth}, conditional={conditional}, season_channels={season_channels}"
            )
        self.in_channels, self.n_classes, self.width = in_channels, n_classes, width
        self.depth, self.conditional, self.season_channels = depth, conditional, season_channels
        layers = [_conv_block(in_channels + season_channels, width)]
        layers += [_conv_block(width, width) for _ in range(depth - 1)]
        self.encoder = nn.Sequential(*layers)
        fused = (3 + conditional) * width
        self.condition = _conv_block(n_classes - 1, width) if conditional else None
        self.change_head = _head(fused, width, 2)
        # One semantic trunk for both land-cover heads (they read the same fused features; a trunk each
        # cost 40 % more training time for the same receptive field).
        self.semantic = _conv_block(fused, width)
        self.from_head = nn.Conv2d(width, n_classes - 1, kernel_size=1)
        self.to_head = nn.Conv2d(width, n_classes - 1, kernel_size=1)

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in the model card."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "width": self.width,
            "depth": self.depth,
            "conditional": self.conditional,
            "season_channels": self.season_channels,
        }

    @property
    def n_landcover(self) -> int:
        """Logits of the from/to heads (land-cover classes without "no change")."""
        return self.n_classes - 1

    @property
    def receptive_field(self) -> int:
        """Side (pixels) of the input window one output pixel sees: the encoder then the widest head;
        the condition branch (one 3x3 convolution) runs beside the encoder and is narrower than it."""

        def span(modules: list[nn.Module]) -> int:
            total = 0
            for module in modules:
                if isinstance(module, nn.Conv2d):
                    if module.stride != (1, 1):
                        raise AssertionError("SiameseSemanticNet must not stride")
                    total += (module.kernel_size[0] - 1) * module.dilation[0]
            return total

        encoder = span(list(self.encoder.modules()))
        if self.condition is not None:
            encoder = max(encoder, span(list(self.condition.modules())))
        semantic = span([*self.semantic.modules(), self.from_head, self.to_head])
        return 1 + encoder + max(span(list(self.change_head.modules())), semantic)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, width, H, W)`` of normalised images of one date each (weight-tied)."""
        return self.encoder(x)

    def decode(
        self, f_before: torch.Tensor, f_after: torch.Tensor, condition: torch.Tensor | None = None
    ) -> SemanticLogits:
        """The three heads from two dates' features (``encode`` output) and, for the conditional model,
        the one-hot date-1 land cover ``(N, n_classes - 1, H, W)``."""
        if f_before.shape != f_after.shape:
            raise ValueError(
                f"features before {tuple(f_before.shape)} and after {tuple(f_after.shape)} differ in shape"
            )
        parts = [f_before, f_after, (f_after - f_before).abs()]
        if self.condition is not None:
            expected = (f_before.shape[0], self.n_landcover, *f_before.shape[2:])
            if condition is None or tuple(condition.shape) != expected:
                got = None if condition is None else tuple(condition.shape)
                raise ValueError(
                    f"the conditional model needs a one-hot condition of shape {expected}, got {got}"
                )
            parts.append(self.condition(condition.to(f_before.dtype)))
        elif condition is not None:
            raise ValueError("this model is not conditional: give no land-cover condition")
        fused = torch.cat(parts, dim=1)
        semantic = self.semantic(fused)
        return SemanticLogits(self.change_head(fused), self.from_head(semantic), self.to_head(semantic))

    def forward(
        self, before: torch.Tensor, after: torch.Tensor, condition: torch.Tensor | None = None
    ) -> SemanticLogits:
        """``SemanticLogits`` of a pair of normalised images (and the date-1 land cover, conditional)."""
        if before.shape != after.shape:
            raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
        f_before, f_after = self.encode(torch.cat([before, after], dim=0)).chunk(2, dim=0)
        return self.decode(f_before, f_after, condition)


# -- inference ------------------------------------------------------------------------------------------


class SemanticProbs(NamedTuple):
    """Per-transition probabilities of a semantic change model (float32; transition ``t`` compares
    period ``t`` with period ``t + 1``)."""

    change: np.ndarray
    """``(T - 1, H, W)`` probability of change."""
    from_class: np.ndarray
    """``(T - 1, K, H, W)`` land cover at the earlier period (index ``i`` is ``LANDCOVER`` code ``i + 1``)."""
    to_class: np.ndarray
    """``(T - 1, K, H, W)`` land cover at the later period."""


def check_semantic_inputs(card: ModelCard, available_bands: Sequence[str], resolution_m: float) -> None:
    """Raise ``ModelError`` unless ``card`` is a semantic change model whose bands the cube has, at the
    card's resolution."""
    if card.task != SEMANTIC_TASK:
        raise ModelError(f"model {card.name!r} is a {card.task} model, not a {SEMANTIC_TASK} model")
    check_bands_and_resolution(card, available_bands, resolution_m)


def one_hot_landcover(codes: np.ndarray, n_landcover: int) -> np.ndarray:
    """One-hot float32 ``(..., n_landcover, H, W)`` of ``LANDCOVER`` codes ``(..., H, W)``; code ``c`` in
    1..n_landcover sets channel ``c - 1``, any other code (0 nodata, 255) leaves all channels 0."""
    codes = np.asarray(codes)
    channels = np.arange(1, n_landcover + 1, dtype=np.int64).reshape(n_landcover, 1, 1)
    return (codes[..., None, :, :].astype(np.int64) == channels).astype(np.float32)


def _semantic_predictor(module: SiameseSemanticNet, n_periods: int, n_bands: int) -> WindowPredictor:
    """Window predictor: each period encoded once, consecutive pairs decoded.

    Takes ``(B * T, C + K?, h, w)`` (the conditional model's one-hot date-1 land cover in the last ``K``
    channels of each earlier period) and returns ``(B * (T - 1), 1 + 2K, h, w)``: p(change), then the
    from-class and to-class probabilities.
    """

    def predict(windows: torch.Tensor) -> torch.Tensor:
        features = [module.encode(windows[i : i + 1, :n_bands]) for i in range(windows.shape[0])]
        out = []
        for start in range(0, len(features), n_periods):
            for i in range(start, start + n_periods - 1):
                condition = windows[i : i + 1, n_bands:] if module.conditional else None
                logits = module.decode(features[i], features[i + 1], condition)
                out.append(
                    torch.cat(
                        [
                            logits.change.float().softmax(dim=1)[:, 1:],
                            logits.from_class.float().softmax(dim=1),
                            logits.to_class.float().softmax(dim=1),
                        ],
                        dim=1,
                    )
                )
        return out[0] if len(out) == 1 else torch.cat(out)

    return predict


def predict_semantic_series(
    model: LoadedModel,
    bands: np.ndarray,
    condition: np.ndarray | None = None,
    *,
    days: Sequence[int] | np.ndarray | None = None,
    region: tuple[slice, slice] | None = None,
    config: EngineConfig | None = None,
) -> SemanticProbs:
    """Probabilities of every transition of a monthly series, on the tiled engine (crop mode, exact halo).

    Args:
        model: a loaded semantic change model (``card.task == "semantic-change-detection"``).
        bands: ``(T >= 2, C, H, W)`` float32 raw band values in ``model.card.bands`` order (surface
            reflectance 0-1, S1 dB), NaN = no data; normalised with the card's statistics here.
        condition: conditional models only: ``(T - 1, H, W)`` uint8 ``LANDCOVER`` codes of the earlier
            period of each transition (0 = unknown: no class is given there).
        days: models with season channels only: the ``T`` periods' middle days (days since 1970-01-01
            or ``datetime64``), see ``season_planes``.
        region: ``(rows, cols)`` to predict; the rest of ``bands`` is context.
        config: engine windows (default: the device's default with halo ``receptive_field // 2``, so the
            result equals whole-image inference to float rounding).

    Returns:
        ``SemanticProbs`` over ``region``.
    """
    card, module = model.card, model.module
    if card.task != SEMANTIC_TASK or not isinstance(module, SiameseSemanticNet):
        raise ModelError(f"model {card.name!r} is not a semantic change model (task {card.task})")
    if bands.ndim != 4 or bands.shape[0] < 2 or bands.shape[1] != len(card.bands):
        raise InputError(
            f"expected (T >= 2, {len(card.bands)}, H, W) periods in band order {card.bands}, "
            f"got {bands.shape}"
        )
    x = with_season(model, preprocess(card, bands), days)
    n_bands = x.shape[1]
    if module.conditional:
        if condition is None or condition.shape != (bands.shape[0] - 1, *bands.shape[2:]):
            got = None if condition is None else condition.shape
            raise InputError(
                f"model {card.name!r} needs the earlier period's land cover, (T - 1, H, W) = "
                f"{(bands.shape[0] - 1, *bands.shape[2:])}, got {got}"
            )
        hot = one_hot_landcover(condition, module.n_landcover)
        hot = np.concatenate([hot, np.zeros_like(hot[:1])])  # the last period is never "before"
        x = np.concatenate([x, hot], axis=1)
    elif condition is not None:
        raise InputError(f"model {card.name!r} is not conditional: give no land-cover condition")
    device = module_device(module)
    net = fuse_conv_gelu(module) if device.type == "cpu" else module
    engine = config if config is not None else default_config(device, module.receptive_field // 2)
    out = run_tiled(
        _semantic_predictor(net, bands.shape[0], n_bands),  # type: ignore[arg-type]
        torch.from_numpy(x),
        engine,
        region=region,
        device=device,
    )
    k = module.n_landcover
    return SemanticProbs(out[:, 0], out[:, 1 : 1 + k], out[:, 1 + k :])


def decode_semantic(probs: SemanticProbs, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SECOND-style maps from probabilities: ``(change, from, to)``.

    A pixel is changed where ``p(change) >= threshold``. There, the (from, to) pair is the most likely
    pair of **different** classes (``argmax_{i != j} p_from(i) p_to(j)``: a change always changes the
    class); elsewhere both maps are 0 (no change).

    Returns:
        ``change`` bool ``(T - 1, H, W)``; ``from`` and ``to`` uint8 ``(T - 1, H, W)`` in
        ``SEMANTIC_CLASSES`` codes (0 no change, 1..8 ``LANDCOVER``).
    """
    change = probs.change >= threshold
    p_from, p_to = probs.from_class, probs.to_class
    first_from, first_to = p_from.argmax(axis=1), p_to.argmax(axis=1)
    clash = first_from == first_to
    # Where the two argmaxes agree, the best different pair swaps one side for its runner-up.
    second_from = np.argsort(p_from, axis=1)[:, -2]
    second_to = np.argsort(p_to, axis=1)[:, -2]
    take = np.take_along_axis
    keep_from = take(p_from, first_from[:, None], 1)[:, 0] * take(p_to, second_to[:, None], 1)[:, 0]
    keep_to = take(p_from, second_from[:, None], 1)[:, 0] * take(p_to, first_to[:, None], 1)[:, 0]
    from_idx = np.where(clash & (keep_to > keep_from), second_from, first_from)
    to_idx = np.where(clash & (keep_to <= keep_from), second_to, first_to)
    from_map = np.where(change, from_idx + 1, 0).astype(np.uint8)
    to_map = np.where(change, to_idx + 1, 0).astype(np.uint8)
    return change, from_map, to_map
