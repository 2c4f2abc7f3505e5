"""Hyper-parameters and command-line helpers shared by the chip-sampling training tasks of the VHR U-Nets."""

from __future__ import annotations

from dataclasses import dataclass

from eowatch.errors import InputError

__all__ = ["ChipTrainSettings", "seed_list"]


@dataclass(frozen=True)
class ChipTrainSettings:
    """The model's name and version, the U-Net's size, the chips per epoch and the optimiser (AdamW with a
    one-cycle schedule); tasks subclass it with their own defaults, loss and sampling."""

    name: str
    """Model name (file stem and registry key)."""
    version: str = "0.1.0"
    """Version recorded in the card."""
    width: int = 16
    """Channels of the first pooled stage of the U-Net."""
    levels: int = 4
    """Pooled stages."""
    chips_per_epoch: int = 512
    """Chips drawn per epoch."""
    batch_size: int = 8
    """Chips per optimiser step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    threads: int = 2
    """Torch CPU threads (fixed for determinism)."""

    def __post_init__(self) -> None:
        if min(self.chips_per_epoch, self.batch_size, self.threads) < 1 or not self.lr > 0:
            raise InputError("chips_per_epoch, batch_size, threads and lr must be positive")
        if min(self.width, self.levels) < 1 or self.weight_decay < 0:
            raise InputError("width and levels must be >= 1 and weight_decay >= 0")


def seed_list(text: str) -> list[int]:
    """Archive seeds of a comma-separated command-line value (``"1,2,3"``; empty items skipped)."""
    return [int(s) for s in text.split(",") if s]
