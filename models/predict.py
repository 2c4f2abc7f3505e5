"""Change inference: input checks, the preprocessing shared with training, and tiled prediction.

Prediction runs on the tiled engine (``models.engine``): ``predict_change_series`` predicts every
transition of a time series (each period encoded once), ``predict_change`` one pair, and
``predict_change_batch`` independent windows without tiling.

Preprocessing (identical in training, see ``preprocess``): each band is normalised with the card's
``(x - mean) / std``, NaN (no clear observation) becomes 0 after normalisation, i.e. the band's mean, and,
when ``card.validity_channel`` is set, one extra channel per date holds the fraction of finite bands of
each pixel (1 = all bands observed, 0 = none), so the network can tell "no data" from "average data".
A model with season channels (``module.season_channels == 2``) then reads its period's
``season.season_planes`` after those channels, so every prediction of such a model needs the periods'
middle days (``days``).

On CUDA the change predictions normalise on the GPU (``window_normalizer``, the same arithmetic per
window): the host then only cuts raw windows and copies them, which made change inference 2.9x
(S2+S1) and 1.9x (VHR) faster on an H100 (benchmarks/results/gpu.json); elsewhere the whole input is
normalised once, before tiling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from eowatch.errors import InputError, ModelError

from .card import ModelCard
from .engine import (
    EngineConfig,
    WindowPredictor,
    default_config,
    fuse_conv_gelu,
    inference_context,
    module_device,
    run_tiled,
)
from .season import season_planes
from .siamese import SiameseChangeNet
from .weights import LoadedModel

__all__ = [
    "SEMANTIC_TASK",
    "check_bands_and_resolution",
    "check_days",
    "check_inputs",
    "draw_raw_inputs",
    "normalize_bands",
    "predict_change",
    "predict_change_batch",
    "predict_change_series",
    "preprocess",
    "season_days",
    "with_season",
]


#: Task of the semantic change models (``models.siamese_semantic``): from/to land-cover heads, and for the
#: conditional variant a land-cover map as input, which the monitoring flow's change stage cannot run.
SEMANTIC_TASK = "semantic-change-detection"


def check_inputs(card: ModelCard, available_bands: Sequence[str], resolution_m: float) -> None:
    """Raise ``ModelError`` naming what the cube lacks for the model (bands, resolution), or when the model
    is a semantic change model (three heads; the change stage runs single-head change models)."""
    if card.task == SEMANTIC_TASK:
        raise ModelError(
            f"model {card.name!r} is a {SEMANTIC_TASK} model (binary change, from-class and to-class "
            "maps); the monitoring flow runs change-detection models such as 'siamese-s2s1-change'. "
            "Score it with eowatch.models.semantic_eval.evaluate_semantic_cube"
        )
    check_bands_and_resolution(card, available_bands, resolution_m)


def check_bands_and_resolution(card: ModelCard, available_bands: Sequence[str], resolution_m: float) -> None:
    """Raise ``ModelError`` naming the card's bands the cube lacks, or a resolution other than the card's."""
    missing = [b for b in card.bands if b not in set(available_bands)]
    if missing:
        raise ModelError(
            f"model {card.name!r} needs bands {', '.join(missing)} that the cube lacks "
            f"(cube has: {', '.join(available_bands) or 'none'})"
        )
    if abs(float(resolution_m) - card.resolution_m) > 1e-6 * card.resolution_m:
        raise ModelError(
            f"model {card.name!r} was trained at {card.resolution_m:g} m but the cube is at "
            f"{float(resolution_m):g} m; resample the cube to {card.resolution_m:g} m"
        )


def normalize_bands(x: np.ndarray, mean: np.ndarray, std: np.ndarray, validity: bool) -> np.ndarray:
    """``(x - mean) / std`` per band of ``(..., C, H, W)``, NaN -> 0, plus the optional validity channel.

    Returns float32 ``(..., C + validity, H, W)`` without NaN.
    """
    mean = np.asarray(mean, dtype=np.float32)[:, None, None]
    std = np.asarray(std, dtype=np.float32)[:, None, None]
    finite = np.isfinite(x)
    z = np.where(finite, (x.astype(np.float32, copy=False) - mean) / std, np.float32(0.0))
    if not validity:
        return z.astype(np.float32, copy=False)
    valid = finite.mean(axis=-3, keepdims=True, dtype=np.float32)
    return np.concatenate([z, valid], axis=-3).astype(np.float32, copy=False)


def preprocess(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Network input from raw ``(..., C, H, W)`` bands in ``card.bands`` order (see the module docstring)."""
    if x.ndim < 3 or x.shape[-3] != len(card.bands):
        raise InputError(f"expected (..., {len(card.bands)}, H, W) in band order {card.bands}, got {x.shape}")
    mean = [card.normalization[b][0] for b in card.bands]
    std = [card.normalization[b][1] for b in card.bands]
    return normalize_bands(x, np.array(mean), np.array(std), card.validity_channel)


def draw_raw_inputs(
    card: ModelCard,
    periods: int,
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    digital_numbers: bool = False,
) -> np.ndarray:
    """Random raw bands float32 ``(periods, C, height, width)`` distributed as the card's normalisation
    statistics (each band ``mean + std * N(0, 1)``), for benchmarks and device checks that need inputs
    the model sees as typical; ``digital_numbers`` rounds and clips them to 1-255 (8-bit VHR imagery)."""
    mean = np.array([card.normalization[b][0] for b in card.bands], np.float32)[None, :, None, None]
    std = np.array([card.normalization[b][1] for b in card.bands], np.float32)[None, :, None, None]
    x = mean + std * rng.standard_normal((periods, len(card.bands), height, width), dtype=np.float32)
    return np.clip(np.round(x), 1, 255) if digital_numbers else x


def window_normalizer(
    card: ModelCard, season: np.ndarray | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``preprocess`` (then ``with_season``) as a torch function of a batch of raw windows, run on the
    windows' device.

    The returned function takes ``(B * T, C, h, w)`` float32 raw bands in ``card.bands`` order (NaN = no
    data), the ``T`` periods of each window consecutive, and returns the network input
    ``(B * T, C', h, w)``: the same float32 arithmetic as ``preprocess``, so the values are equal.
    ``season``: ``(T, 2)`` sine and cosine per period (``season.season_planes``' values) for a model
    with season channels, else None.
    """
    mean = torch.tensor([card.normalization[b][0] for b in card.bands], dtype=torch.float32)[:, None, None]
    std = torch.tensor([card.normalization[b][1] for b in card.bands], dtype=torch.float32)[:, None, None]
    planes = None if season is None else torch.as_tensor(np.asarray(season, dtype=np.float32))

    def normalize(windows: torch.Tensor) -> torch.Tensor:
        dev = windows.device
        finite = torch.isfinite(windows)
        z = torch.where(finite, (windows - mean.to(dev)) / std.to(dev), torch.zeros((), device=dev))
        parts = [z]
        if card.validity_channel:
            parts.append(finite.to(torch.float32).mean(dim=-3, keepdim=True))
        if planes is not None:
            per_image = planes.to(dev).repeat(windows.shape[0] // planes.shape[0], 1)
            parts.append(per_image[:, :, None, None].expand(-1, -1, *windows.shape[-2:]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-3)

    return normalize


def check_days(model: LoadedModel, days: Sequence[int] | np.ndarray | None, n_periods: int) -> None:
    """Raise ``InputError`` unless ``days`` holds ``n_periods`` middle days for a model that reads the
    season (``module.season_channels``), or is ``None`` for one that does not."""
    if not getattr(model.module, "season_channels", 0):
        if days is not None:
            raise InputError(f"model {model.card.name!r} does not read the season: give no days")
    elif days is None or len(days) != n_periods:
        got = None if days is None else len(days)
        raise InputError(
            f"model {model.card.name!r} reads the season: give the {n_periods} periods' middle days, "
            f"got {got}"
        )


def season_days(model: LoadedModel, middle_days: Sequence[int] | np.ndarray) -> np.ndarray | None:
    """int64 ``(T,)`` periods' middle days for a model that reads the season, ``None`` for one that does
    not: what ``with_season`` (and every predict function taking ``days``) expects from a run's periods."""
    return np.asarray(middle_days, np.int64) if getattr(model.module, "season_channels", 0) else None


def with_season(model: LoadedModel, x: np.ndarray, days: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """Preprocessed ``(T, C', H, W)`` periods with each period's season planes appended when the model
    reads the season; ``days`` (the ``T`` periods' middle days, days since 1970-01-01 or ``datetime64``)
    is then required, and must be ``None`` for a model without season channels (``check_days``)."""
    check_days(model, days, x.shape[0])
    if days is None:
        return x
    return np.concatenate([x, season_planes(days, x.shape[-2:])], axis=1)


def _check_pair(model: LoadedModel, before: np.ndarray, after: np.ndarray, ndim: int) -> None:
    if before.shape != after.shape:
        raise InputError(f"before {before.shape} and after {after.shape} must have the same shape")
    if before.ndim != ndim or before.shape[-3] != len(model.card.bands):
        raise InputError(
            f"expected {'(N, ' if ndim == 4 else '('}{len(model.card.bands)}, H, W) arrays in "
            f"band order {model.card.bands}, got {before.shape}"
        )


def _series_predictor(
    module: SiameseChangeNet,
    n_periods: int,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> WindowPredictor:
    """Window predictor of a change series: each period encoded once, consecutive pairs decoded.

    Takes ``(B * T, C, h, w)`` (T periods of each window, consecutive) and returns softmax probabilities
    ``(B * (T - 1), n_classes, h, w)``: T encoder passes per window instead of ``2 (T - 1)``.
    ``normalize``: applied to the windows first when they are raw bands (``window_normalizer``).
    """

    def predict(windows: torch.Tensor) -> torch.Tensor:
        if normalize is not None:
            windows = normalize(windows)
        # One image per pass: activations stay a few MB (cache- and allocator-friendly; tensors over
        # 32 MB are mmap-ed afresh by glibc on every call and cost page faults), and slicing along the
        # batch keeps the channels-last layout, where a reshape would not.
        features = [module.encode(windows[i : i + 1]) for i in range(windows.shape[0])]
        probs = [
            module.decode(features[i], features[i + 1]).float().softmax(dim=1)
            for start in range(0, len(features), n_periods)
            for i in range(start, start + n_periods - 1)
        ]
        return probs[0] if len(probs) == 1 else torch.cat(probs)

    return predict


def _config(model: LoadedModel, device: torch.device, config: EngineConfig | None) -> EngineConfig:
    """The given config, or the device's default with the exact halo ``receptive_field // 2``."""
    return config if config is not None else default_config(device, model.module.receptive_field // 2)


def predict_change_series(
    model: LoadedModel,
    bands: np.ndarray,
    *,
    region: tuple[slice, slice] | None = None,
    config: EngineConfig | None = None,
    days: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Softmax change probabilities of every transition of a time series, with the tiled engine.

    Each period is normalised and encoded once per window and its features serve both transitions
    that share it; windows follow ``config`` (default: ``engine.default_config`` for the module's
    device with the exact halo, so the result equals whole-image inference to float rounding, ~1e-6).
    Runs where ``model.module`` lives (``engine.pin_module`` moves it); on CPU with fused conv + GELU.

    Args:
        model: loaded model.
        bands: ``(T, C, H, W)`` float32 raw band values in ``model.card.bands`` order, NaN = no data,
            T >= 2 periods on one grid.
        region: ``(rows, cols)`` slices to predict; pixels of ``bands`` around it are context (a chunk
            read with a halo). Default: everything.
        config: engine windows, batching and precision.
        days: models with season channels only: the ``T`` periods' middle days (``with_season``).

    Returns:
        ``(T - 1, n_classes, h, w)`` float32 over ``region``: transition ``t`` is period ``t`` -> ``t + 1``.
    """
    if bands.ndim != 4 or bands.shape[1] != len(model.card.bands) or bands.shape[0] < 2:
        raise InputError(
            f"expected (T >= 2, {len(model.card.bands)}, H, W) periods in band order {model.card.bands}, "
            f"got {bands.shape}"
        )
    device = module_device(model.module)
    if device.type == "cuda":  # raw windows to the GPU, normalised there (module docstring)
        check_days(model, days, bands.shape[0])
        season = None if days is None else season_planes(days, (1, 1))[:, :, 0, 0]
        x = torch.from_numpy(np.ascontiguousarray(bands, dtype=np.float32))
        predictor = _series_predictor(model.module, bands.shape[0], window_normalizer(model.card, season))
    else:
        x = torch.from_numpy(with_season(model, preprocess(model.card, bands), days))
        module = fuse_conv_gelu(model.module) if device.type == "cpu" else model.module
        predictor = _series_predictor(module, bands.shape[0])
    return run_tiled(predictor, x, _config(model, device, config), region=region, device=device)


def predict_change_batch(
    model: LoadedModel,
    before: np.ndarray,
    after: np.ndarray,
    batch_tiles: int = 4,
    *,
    days: tuple[int, int] | np.ndarray | None = None,
) -> np.ndarray:
    """Softmax change probabilities for a batch of independent windows, ``batch_tiles`` per forward pass.

    Args:
        model: loaded model (CPU or CUDA; bf16 autocast on CUDA only).
        before: ``(N, C, H, W)`` float32 raw band values in ``model.card.bands`` order, NaN = no data.
        after: same shape as ``before``.
        batch_tiles: windows per forward pass (bounds memory).
        days: models with season channels only: the middle days of the two periods.

    Returns:
        ``(N, n_classes, H, W)`` float32 probabilities. Pixels within ``receptive_field // 2`` of a
        window edge see zero padding: give windows a halo and crop it (``predict_change_series`` does).
    """
    _check_pair(model, before, after, ndim=4)
    check_days(model, days, 2)
    if batch_tiles < 1:
        raise InputError(f"batch_tiles must be >= 1, got {batch_tiles}")
    device = module_device(model.module)
    module = fuse_conv_gelu(model.module) if device.type == "cpu" else model.module
    config = _config(model, device, None)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    out = []
    with inference_context(device, config):
        for i in range(0, before.shape[0], batch_tiles):
            b, a = (
                torch.from_numpy(_with_date_season(preprocess(model.card, x[i : i + batch_tiles]), day)).to(
                    device, memory_format=fmt
                )
                for x, day in zip((before, after), (None, None) if days is None else days, strict=True)
            )
            out.append(module(b, a).float().softmax(dim=1).cpu().numpy())
    n_classes = model.card.architecture_args["n_classes"]
    return np.concatenate(out, axis=0) if out else np.zeros((0, n_classes, *before.shape[2:]), np.float32)


def _with_date_season(x: np.ndarray, day: int | None) -> np.ndarray:
    """``(N, C', H, W)`` windows of one date, with its season planes appended when ``day`` is given."""
    if day is None:
        return x
    planes = season_planes([day], x.shape[-2:])
    return np.concatenate([x, np.broadcast_to(planes, (x.shape[0], *planes.shape[1:]))], axis=1)


def predict_change(
    model: LoadedModel,
    before: np.ndarray,
    after: np.ndarray,
    batch_tiles: int = 4,
    *,
    tile: int = 256,
    days: tuple[int, int] | np.ndarray | None = None,
) -> np.ndarray:
    """Softmax change probabilities of one scene pair, predicted tile by tile with an exact halo.

    A two-period ``predict_change_series`` with cores of at most ``tile`` px, ``batch_tiles`` windows
    per forward pass.

    Args:
        model: loaded model.
        before: ``(C, H, W)`` float32 raw band values of the earlier period in ``model.card.bands`` order.
        after: same for the later period.
        batch_tiles: tiles per forward pass.
        tile: largest core tile side (pixels); windows add a ``receptive_field // 2`` halo on every side.
        days: models with season channels only: the middle days of the two periods.

    Returns:
        ``(n_classes, H, W)`` float32; equal (to float rounding) to predicting the scene in one piece.
    """
    _check_pair(model, before, after, ndim=3)
    config = replace(_config(model, module_device(model.module), None), tile=tile, batch_windows=batch_tiles)
    return predict_change_series(model, np.stack([before, after]), config=config, days=days)[0]
