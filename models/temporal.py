"""Per-pixel temporal classifier: a Lightweight Temporal Attention Encoder (L-TAE) over monthly series.

L-TAE (Garnot & Landrieu, 2020) was chosen over TempCNN because it attends over an *unordered set* of
dated observations: each step carries its own month-of-year encoding and a validity flag, so a series of
any length, with any months missing (clouds, a shorter season, another calendar year), is one masked
softmax away. A TempCNN's convolution assumes a fixed, gap-free time grid, which the archive (Mar–Aug) and
the real WorldCereal series (Nov–Oct with winter gaps) do not share.

Design: each step's channels are embedded by a linear layer, a learned projection of cyclic month
harmonics is added, and ``n_head`` learned *master queries* attend over the valid steps (keys from the
embedding, values are the embedding split into ``n_head`` channel groups). The concatenated head outputs
go through a small MLP to class logits. Pixels are independent (no spatial context, receptive field 1 px).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LTAEClassifier", "month_harmonics"]


def month_harmonics(months: torch.Tensor, n_harmonics: int) -> torch.Tensor:
    """Cyclic encoding of months of the year.

    Args:
        months: integer tensor of months 1-12, any shape ``S``.
        n_harmonics: number of sine/cosine pairs (periods 12, 6, 4, ... months).

    Returns:
        float32 ``(*S, 2 * n_harmonics)``; December and January are neighbours.
    """
    phase = (months.to(torch.float32) - 0.5) * (2.0 * math.pi / 12.0)
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float32, device=months.device)
    angles = phase[..., None] * k
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class LTAEClassifier(nn.Module):
    """L-TAE over the valid steps of a per-pixel series, with an MLP classification head.

    Args:
        in_channels: inputs per time step (normalised bands, derived indices, observation flags).
        n_classes: number of output classes.
        d_model: embedding width per step (divisible by ``n_head``).
        n_head: attention heads, each with its own learned master query.
        d_k: key/query width per head.
        hidden: width of the classification MLP.

    ``forward(x, mask, months)``: ``x`` float32 ``(N, T, in_channels)``, ``mask`` bool ``(N, T)`` (True =
    observed step), ``months`` int ``(N, T)`` or ``(T,)`` months 1-12. Returns logits ``(N, n_classes)``.
    A pixel with no valid step gets the logits of an all-zero summary (its prediction is meaningless;
    callers mark it as nodata).
    """

    n_harmonics = 3

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        d_model: int = 64,
        n_head: int = 8,
        d_k: int = 8,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        if min(in_channels, d_model, n_head, d_k, hidden) < 1 or n_classes < 2 or d_model % n_head:
            raise ValueError(
                f"LTAEClassifier needs positive sizes, n_classes >= 2 and d_model divisible by n_head, got "
                f"in_channels={in_channels}, n_classes={n_classes}, d_model={d_model}, n_head={n_head}, "
                f"d_k={d_k}, hidden={hidden}"
            )
        self.in_channels, self.n_classes = in_channels, n_classes
        self.d_model, self.n_head, self.d_k, self.hidden = d_model, n_head, d_k, hidden
        self.embed = nn.Linear(in_channels, d_model)
        self.position = nn.Linear(2 * self.n_harmonics, d_model, bias=False)
        self.norm = nn.LayerNorm(d_model)
        self.keys = nn.Linear(d_model, n_head * d_k)
        self.queries = nn.Parameter(torch.randn(n_head, d_k) * d_k**-0.5)
        self.head = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, n_classes),
        )

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in the model card."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "d_model": self.d_model,
            "n_head": self.n_head,
            "d_k": self.d_k,
            "hidden": self.hidden,
        }

    @property
    def receptive_field(self) -> int:
        """Pixels of spatial context per output pixel: 1 (pixels are classified independently)."""
        return 1

    def attention(self, x: torch.Tensor, mask: torch.Tensor, months: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(N, n_head, T)`` over the steps; zero on masked steps."""
        return self._attend(self._embed(x, months), mask)[1]

    def _embed(self, x: torch.Tensor, months: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected x of shape (N, T, {self.in_channels}), got {tuple(x.shape)}")
        if months.ndim == 1:
            months = months.expand(x.shape[0], -1)
        return self.norm(self.embed(x) + self.position(month_harmonics(months, self.n_harmonics)))

    def _attend(self, e: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, t, _ = e.shape
        keys = self.keys(e).view(n, t, self.n_head, self.d_k)
        scores = torch.einsum("nthk,hk->nht", keys, self.queries) / math.sqrt(self.d_k)
        valid = mask[:, None, :].expand(-1, self.n_head, -1)
        scores = scores.masked_fill(~valid, float("-inf"))
        # A pixel without any valid step would give NaN (softmax of all -inf): attend to nothing instead.
        empty = ~valid.any(dim=-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(~valid, 0.0)
        values = e.view(n, t, self.n_head, self.d_model // self.n_head)
        summary = torch.einsum("nht,nthc->nhc", weights, values).reshape(n, self.d_model)
        return summary, weights

    def forward(self, x: torch.Tensor, mask: torch.Tensor, months: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes)`` of ``N`` pixel series (see the class docstring)."""
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match x {tuple(x.shape)}")
        summary, _ = self._attend(self._embed(x, months), mask.to(torch.bool))
        return self.head(summary)
