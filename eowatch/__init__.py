"""eowatch: satellite archives to change maps. ``eowatch.open_change`` opens a finished change cube."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "open_change":
        from eowatch.open import open_change

        return open_change
    raise AttributeError(f"module 'eowatch' has no attribute {name!r}")
