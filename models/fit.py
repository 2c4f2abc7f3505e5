"""The chip training loop shared by the change, semantic and VHR models: seeded deterministic torch,
AdamW with a one-cycle schedule over chip datasets that draw their positions per epoch."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

__all__ = ["BatchLoss", "ChipDataset", "deterministic", "fit_chips"]


class ChipDataset(Protocol):
    """A torch dataset of training chips whose positions are drawn per epoch."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def set_epoch(self, epoch: int) -> None: ...


@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic torch with a fixed thread count; the previous settings come back after."""
    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


BatchLoss = Callable[[nn.Module, dict[str, Any]], torch.Tensor]
"""Loss of one batch of chips (a dataset item dict, collated) under a model in training mode."""


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch_loss: BatchLoss,
) -> float:
    model.train()
    losses = []
    for batch in loader:
        loss = batch_loss(model, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        losses.append(loss.detach().item())
    return float(np.mean(losses))


def fit_chips(
    model: nn.Module,
    datasets: Sequence[ChipDataset],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    epoch_loss: Callable[[Sequence[ChipDataset]], BatchLoss],
) -> list[float]:
    """The chip training loop shared by the change models: AdamW with a one-cycle schedule (10 % warm-up,
    peak ``lr``), chips in dataset order (positions are drawn per epoch by ``set_epoch``).

    Each epoch: every dataset draws its chips (``set_epoch``), ``epoch_loss(datasets)`` builds that
    epoch's batch loss (e.g. class weights from the drawn chips), then one pass of ``batch_size``
    batches. Deterministic under ``deterministic`` (no shuffling, no worker processes).

    Returns:
        Mean loss per epoch.
    """
    data = ConcatDataset(datasets)
    steps = max(epochs * math.ceil(len(data) / batch_size), 1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    history = []
    for epoch in range(epochs):
        for part in datasets:
            part.set_epoch(epoch)
        batch_loss = epoch_loss(datasets)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
        started = time.perf_counter()
        history.append(_train_epoch(model, loader, optimiser, scheduler, batch_loss))
        print(
            f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    return history
