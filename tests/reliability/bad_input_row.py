"""The row type of the bad-input tables (``test_bad_inputs.py``, ``test_bad_items.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One bad input: what is given, what must be raised (or the exit code), a piece of the message."""

    input: Any
    expected: type[BaseException] | int
    message: str
