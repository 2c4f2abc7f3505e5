"""One tiled-inference engine for every model family: windows, halo, blending, batches, device, precision.

A model family plugs in a ``WindowPredictor``: a function from a batch of image windows to per-pixel
outputs of the same height and width. The engine cuts the image into equal windows, batches them, runs
the predictor under ``torch.inference_mode`` (bf16 autocast where asked) on the model's device, and
puts the windows' outputs back together, over the whole image or only a region of it (a chunk inside
the halo window read around it):

* **Crop** (``overlap == 0``): cores tile the region and each window keeps only its core. With
  ``halo >= receptive_field // 2`` every kept pixel sees all of its receptive field (or the image edge,
  where the model sees zero padding, as in whole-image inference), so the result equals whole-image
  inference to float rounding: there can be no seams. This is the path of models with a finite
  receptive field (``SiameseChangeNet``: 11 px, halo 5).
* **Blend** (``overlap > 0``): for models whose receptive field is not finite (attention, global
  pooling, very wide dilations), neighbouring windows share a band ``overlap`` px wide across their
  common core edge, where their outputs are averaged with cosine (Hann) weights that rise from 0 to 1
  in one window while they fall from 1 to 0 in the other; the weights sum to one (the engine divides
  by their sum anyway, for bands wider than a core), so the output passes smoothly from one window to
  the next. ``halo`` px at window edges inside the image are
  dropped before blending (they see the least context).

Windows are ``tile + overlap + 2 * halo`` px (or the whole axis) and shifted inward at image edges, so
all windows have the same shape and batch together. Cores are balanced (a 256 px region with
``tile=128`` gives two 128 px cores, a 268 px one three of 89, 89 and 90) so no window is mostly halo.

Device and precision: the engine runs where the predictor's module lives; ``worker_device`` picks a
worker's device (its CUDA GPU when there is one) and ``pin_module`` moves a model there once.
``precision="auto"`` is bf16 autocast on CUDA and float32 on CPU; ``"bfloat16"`` asks for bf16 on CPU
too (avx512_bf16 makes it about twice as fast there, but it changes probabilities by up to ~2e-2, so
it is opt-in). ``fuse_conv_gelu`` gives CPU inference oneDNN's fused convolution + GELU.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eowatch.errors import InputError, ModelError

__all__ = [
    "EngineConfig",
    "Precision",
    "Window",
    "WindowPredictor",
    "blend_weights",
    "default_config",
    "fuse_conv_gelu",
    "inference_context",
    "module_device",
    "pin_module",
    "plan_axis",
    "run_tiled",
    "worker_device",
]

Precision = Literal["auto", "float32", "bfloat16"]

WindowPredictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of windows ``(B * S, C, h, w)`` (on the model's device, channels-last when the config
asks; the ``S`` stacked inputs of one window, e.g. its periods, are consecutive) to outputs
``(B * S_out, K, h, w)`` (any float dtype; ``S_out`` per window, e.g. ``S - 1`` transitions)."""

_CPU_TILE = 256
_CUDA_TILE = 512


@dataclass(frozen=True)
class EngineConfig:
    """How an image is cut into windows and run (pixels are image pixels of the model's grid)."""

    tile: int = _CPU_TILE
    """Largest core side (px); cores are balanced to tile the region evenly."""
    halo: int = 0
    """Context (px) a window reads beyond the blended band on sides inside the image; outputs there are
    dropped. ``>= receptive_field // 2`` makes crop mode exact."""
    overlap: int = 0
    """Width (px) of the band two neighbouring windows blend over; 0 = crop (exact, no blending)."""
    batch_windows: int = 1
    """Windows per predictor call (bounds memory: one batch of windows is resident at a time)."""
    precision: Precision = "auto"
    """``auto``: bf16 autocast on CUDA, float32 elsewhere; ``float32`` (IEEE, no TF32 on CUDA);
    ``bfloat16``: autocast anywhere."""
    channels_last: bool = True
    """Feed windows in channels-last layout (NHWC strides), which oneDNN and cuDNN convolutions prefer."""

    def __post_init__(self) -> None:
        if self.tile < 1 or self.batch_windows < 1:
            raise InputError(
                f"tile and batch_windows must be >= 1, got tile={self.tile}, "
                f"batch_windows={self.batch_windows}"
            )
        if self.halo < 0 or self.overlap < 0:
            raise InputError(f"halo and overlap must be >= 0, got halo={self.halo}, overlap={self.overlap}")
        if self.overlap > self.tile:
            raise InputError(
                f"overlap ({self.overlap} px) must not exceed tile ({self.tile} px): a pixel would fall in "
                "two blending bands of one window; raise tile or lower overlap"
            )
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise InputError(f"precision must be 'auto', 'float32' or 'bfloat16', got {self.precision!r}")

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype on ``device`` (None: plain float32)."""
        if self.precision == "bfloat16" or (self.precision == "auto" and device.type == "cuda"):
            return torch.bfloat16
        return None


def default_config(device: torch.device, halo: int, precision: Precision = "auto") -> EngineConfig:
    """Windows suited to ``device``: cores up to 256 px one at a time on CPU, 512 px four at a time on CUDA.

    Measured on the benchmark CPU (2-core AMD EPYC, one torch thread), a 256 px chunk in one 262 px
    window ran about 6 % faster than in four 138 px windows: the halo's share of the pixels (5-8 % vs 16 %)
    outweighs the smaller windows' better cache use. A GPU wants large batches.
    """
    if device.type == "cuda":
        return EngineConfig(tile=_CUDA_TILE, halo=halo, batch_windows=4, precision=precision)
    return EngineConfig(tile=_CPU_TILE, halo=halo, batch_windows=1, precision=precision)


@dataclass(frozen=True)
class Window:
    """One window along one axis (image pixel indices, stop exclusive)."""

    start: int
    """First pixel the window reads."""
    stop: int
    """One past the last pixel the window reads."""
    core_start: int
    """First pixel of the window's core (its share of the region before blending)."""
    core_stop: int
    """One past the last pixel of the core."""
    first: bool
    """Whether the core starts at the region's start (no blending band before it)."""
    last: bool
    """Whether the core ends at the region's stop (no blending band after it)."""


def plan_axis(size: int, region: slice, tile: int, halo: int, overlap: int) -> list[Window]:
    """Windows along one axis of ``size`` px whose cores tile ``region`` evenly.

    Each window reads ``min(size, max_core + overlap + 2 * halo)`` px: its core, the blending bands
    (``overlap // 2`` before and ``overlap - overlap // 2`` after an inner core edge) and ``halo`` px
    beyond them, shifted inward at the image edges.
    """
    region = _bounded(region, size)
    r0, r1 = region.start, region.stop
    if not 0 <= r0 < r1 <= size:
        raise InputError(f"region {r0}:{r1} is empty or outside an axis of {size} px")
    n = math.ceil((r1 - r0) / tile)
    bounds = [r0 + (i * (r1 - r0)) // n for i in range(n + 1)]
    span = min(size, max(b - a for a, b in itertools.pairwise(bounds)) + overlap + 2 * halo)
    out = []
    for i, (s, e) in enumerate(itertools.pairwise(bounds)):
        lo = s if i == 0 else s - overlap // 2
        start = int(np.clip(lo - halo, 0, size - span))
        out.append(Window(start, start + span, s, e, first=i == 0, last=i == n - 1))
    return out


def _ramp(t: np.ndarray) -> np.ndarray:
    """Cosine (Hann) ramp: 0 for t <= 0, sin^2(pi t / 2) between, 1 for t >= 1."""
    return np.sin(0.5 * np.pi * np.clip(t, 0.0, 1.0)) ** 2


def blend_weights(window: Window, region: slice, overlap: int) -> np.ndarray:
    """Weights ``(stop - start,)`` float64 of one window along one axis (0 outside its blended core).

    The ramp before a core edge ``b`` rises over ``[b - overlap // 2, b - overlap // 2 + overlap)`` at
    pixel centres; the previous window's ramp falls over the same band as ``1 - ramp``, so the weights
    of all windows sum to one at every pixel of the region.
    """
    centres = np.arange(window.start, window.stop, dtype=np.float64) + 0.5
    inside = (centres > region.start) & (centres < region.stop)
    if overlap == 0:
        return (inside & (centres > window.core_start) & (centres < window.core_stop)).astype(np.float64)
    up = (
        np.ones_like(centres)
        if window.first
        else _ramp((centres - (window.core_start - overlap // 2)) / overlap)
    )
    down = np.ones_like(centres)
    if not window.last:
        down = 1.0 - _ramp((centres - (window.core_stop - overlap // 2)) / overlap)
    return up * down * inside


def module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter (CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def worker_device() -> torch.device:
    """This worker's device: its current CUDA GPU when there is one (dask-cuda gives each worker one
    through ``CUDA_VISIBLE_DEVICES``), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def pin_module(module: nn.Module, device: torch.device) -> nn.Module:
    """Move ``module`` to ``device`` in place, once (a cached model then stays on the worker's device)."""
    if module_device(module) != device:
        module.to(device)
    return module


@contextmanager
def _ieee_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, convolutions and matrix products in IEEE float32 rather than TF32 (10-bit mantissa),
    which torch allows cuDNN by default; restored afterwards. Measured on an H100: a land-cover U-Net's
    probabilities differed from the CPU's by 1.9e-3 with TF32. The flags are process-wide."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextmanager
def inference_context(device: torch.device, config: EngineConfig) -> Iterator[None]:
    """``torch.inference_mode`` plus bf16 autocast on ``device`` when ``config`` asks for it; float32
    means IEEE float32 on CUDA too (no TF32)."""
    dtype = config.autocast_dtype(device)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None),
        nullcontext() if dtype is not None else _ieee_float32(device),
    ):
        yield


def run_tiled(
    predict: WindowPredictor,
    x: torch.Tensor,
    config: EngineConfig,
    *,
    region: tuple[slice, slice] | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """Run ``predict`` window by window over ``x`` and assemble its output over ``region``.

    Args:
        predict: the model family's window predictor (see ``WindowPredictor``).
        x: ``(S, C, H, W)`` float network input on the CPU (already normalised), e.g. S periods.
        config: windows, blending, batching and precision.
        region: ``(rows, cols)`` slices of ``x`` to predict (default: all of it); the pixels of ``x``
            around it are context only.
        device: where ``predict``'s module lives (default CPU); windows are sent there.

    Returns:
        ``(S_out, K, h, w)`` float32 over ``region``, ``h, w`` its height and width.
    """
    if x.ndim != 4:
        raise InputError(f"expected an (S, C, H, W) input, got shape {tuple(x.shape)}")
    device = device or torch.device("cpu")
    height, width = x.shape[-2:]
    rows, cols = region if region is not None else (slice(None), slice(None))
    rows, cols = _bounded(rows, height), _bounded(cols, width)
    plan = [
        (wy, wx)
        for wy in plan_axis(height, rows, config.tile, config.halo, config.overlap)
        for wx in plan_axis(width, cols, config.tile, config.halo, config.overlap)
    ]
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    acc = _Assembler(rows, cols, config.overlap)
    with inference_context(device, config):
        for i in range(0, len(plan), config.batch_windows):
            group = plan[i : i + config.batch_windows]
            windows = [x[:, :, wy.start : wy.stop, wx.start : wx.stop] for wy, wx in group]
            batch = windows[0] if len(windows) == 1 else torch.cat(windows)
            batch = batch.to(device=device, memory_format=fmt)
            result = predict(batch)
            _check_result(result, batch, len(group))
            out = result.float().cpu().contiguous().numpy()
            out = out.reshape(len(group), -1, *out.shape[1:])
            for (wy, wx), window_out in zip(group, out, strict=True):
                acc.add(window_out, wy, wx)
    return acc.result()


def _bounded(s: slice, size: int) -> slice:
    """``s`` with explicit start and stop (step 1 only)."""
    if s.step not in (None, 1):
        raise InputError(f"region slices must have step 1, got {s}")
    return slice(0 if s.start is None else s.start, size if s.stop is None else s.stop)


def _check_result(result: torch.Tensor, batch: torch.Tensor, n_windows: int) -> None:
    if result.ndim != 4 or result.shape[-2:] != batch.shape[-2:] or result.shape[0] % n_windows:
        raise ModelError(
            f"window predictor returned {tuple(result.shape)} for windows {tuple(batch.shape)}; it must "
            f"return (B * S_out, K, {batch.shape[-2]}, {batch.shape[-1]}) for B = {n_windows} windows"
        )


class _Assembler:
    """Puts window outputs together over the region: core copies (crop) or weighted sums (blend)."""

    def __init__(self, rows: slice, cols: slice, overlap: int) -> None:
        self.rows, self.cols, self.overlap = rows, cols, overlap
        self.shape = (rows.stop - rows.start, cols.stop - cols.start)
        self.out: np.ndarray | None = None
        self.weight = np.zeros(self.shape, np.float64) if overlap else None

    def add(self, window_out: np.ndarray, wy: Window, wx: Window) -> None:
        """Add one window's output ``(S_out, K, h, w)`` read over windows ``wy`` x ``wx``."""
        if self.out is None:
            self.out = np.zeros((*window_out.shape[:2], *self.shape), np.float32)
        if self.weight is None:  # crop: copy the core
            oy = slice(wy.core_start - self.rows.start, wy.core_stop - self.rows.start)
            ox = slice(wx.core_start - self.cols.start, wx.core_stop - self.cols.start)
            iy = slice(wy.core_start - wy.start, wy.core_stop - wy.start)
            ix = slice(wx.core_start - wx.start, wx.core_stop - wx.start)
            self.out[..., oy, ox] = window_out[..., iy, ix]
            return
        y0, y1 = max(wy.start, self.rows.start), min(wy.stop, self.rows.stop)
        x0, x1 = max(wx.start, self.cols.start), min(wx.stop, self.cols.stop)
        w = np.outer(
            blend_weights(wy, self.rows, self.overlap)[y0 - wy.start : y1 - wy.start],
            blend_weights(wx, self.cols, self.overlap)[x0 - wx.start : x1 - wx.start],
        )
        oy, ox = (
            slice(y0 - self.rows.start, y1 - self.rows.start),
            slice(x0 - self.cols.start, x1 - self.cols.start),
        )
        part = window_out[..., y0 - wy.start : y1 - wy.start, x0 - wx.start : x1 - wx.start]
        self.out[..., oy, ox] += (part * w).astype(np.float32)
        self.weight[oy, ox] += w

    def result(self) -> np.ndarray:
        if self.out is None:
            raise ModelError("no window was predicted")
        if self.weight is not None:
            self.out /= self.weight.astype(np.float32)
        return self.out


# --- conv + GELU fusion (CPU inference) ---------------------------------------------------------------

_FUSED_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise"
)


class _ConvGELU(nn.Module):
    """``GELU(conv(x))`` as one oneDNN primitive on CPU in inference (GELU as a post-op of the
    convolution, so activations are written once); the two separate ops otherwise (grad, CUDA)."""

    def __init__(self, conv: nn.Conv2d, approximate: str) -> None:
        super().__init__()
        self.conv = conv
        self.approximate = approximate

    def _fusable(self, x: torch.Tensor) -> bool:
        conv = self.conv
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)
        return (
            x.device.type == "cpu"
            and x.ndim == 4
            and not needs_grad
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if not self._fusable(x):
            return F.gelu(conv(x), approximate=self.approximate)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if dtype not in (torch.float32, torch.bfloat16):
            return F.gelu(conv(x), approximate=self.approximate)
        bias = conv.bias.to(dtype) if conv.bias is not None else None
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(dtype),
            conv.weight.to(dtype),
            bias,
            list(conv.padding),
            list(conv.stride),
            list(conv.dilation),
            conv.groups,
            "gelu",
            [],
            self.approximate,
        )


def fuse_conv_gelu(module: nn.Module) -> nn.Module:
    """A view of ``module`` whose ``Sequential`` runs of ``Conv2d`` then ``GELU`` run fused on CPU.

    The view shares the module's parameters (no copy: training updates and ``.to()`` moves show through)
    and keeps its methods, so ``fuse_conv_gelu(net).encode(x)`` works like ``net.encode(x)``; outputs
    agree to float rounding (~1e-6). Returns ``module`` itself where oneDNN is unavailable.
    """
    return _fused_view(module) if _FUSED_AVAILABLE else module


def _fused_view(module: nn.Module) -> nn.Module:
    children: dict[str, nn.Module | None] = {
        name: _fused_view(child) if child is not None else None for name, child in module._modules.items()
    }
    if isinstance(module, nn.Sequential):
        children = _fuse_pairs(list(children.items()))
    view = copy.copy(module)  # shallow: shares parameters and buffers
    view.__dict__["_modules"] = children
    return view


def _fuse_pairs(items: Sequence[tuple[str, nn.Module | None]]) -> dict[str, nn.Module | None]:
    out: dict[str, nn.Module | None] = {}
    skip = False
    for (name, child), (_, following) in zip(items, [*items[1:], ("", None)], strict=True):
        if skip:
            out[name], skip = nn.Identity(), False
        elif isinstance(child, nn.Conv2d) and isinstance(following, nn.GELU):
            out[name], skip = _ConvGELU(child, following.approximate), True
        else:
            out[name] = child
    return out
