"""Model card: everything needed to rebuild, feed and judge a shipped model, stored beside its weights."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eowatch.errors import ModelError
from eowatch.legend import CHANGE_COLOURS, CHANGE_TYPES

__all__ = ["DEFAULT_BANDS", "ClassInfo", "ModelCard", "change_classes"]

#: Channel order per date of the shipped S2 + S1 change model.
DEFAULT_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22", "vv_db", "vh_db")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ARCHITECTURES = ("SiameseChangeNet",)


@dataclass(frozen=True)
class ClassInfo:
    """One output class of the model."""

    name: str
    """Change-type name from ``eowatch.legend.CHANGE_TYPES``."""
    colour: tuple[int, int, int]
    """Display colour, RGB 0-255."""


def change_classes(n_classes: int = len(CHANGE_TYPES)) -> dict[int, ClassInfo]:
    """Classes 0..n_classes-1 from the shared legend."""
    return {c: ClassInfo(CHANGE_TYPES[c], tuple(CHANGE_COLOURS[c])) for c in range(n_classes)}


@dataclass(frozen=True)
class ModelCard:
    """Metadata of a change-detection model; round-trips through JSON (``to_json``/``from_json``)."""

    name: str
    """Registry name, also the stem of the weight and card files (``<name>.safetensors``)."""
    version: str
    """Version of the trained weights (semantic version)."""
    architecture: Literal["SiameseChangeNet"]
    """Class in ``eowatch.models`` that the weights belong to."""
    architecture_args: dict[str, int]
    """Constructor arguments of ``architecture`` (in_channels, n_classes, width, depth)."""
    bands: tuple[str, ...]
    """Cube variables stacked as channels per date, in this order."""
    normalization: dict[str, tuple[float, float]]
    """Per band (mean, std) in the band's units; inputs are fed as ``(x - mean) / std``."""
    classes: dict[int, ClassInfo]
    """Output channel index (change-type code) -> class name and colour."""
    receptive_field_px: int
    """Side of the input window one output pixel depends on (pixels); tiles need a halo of half that."""
    validity_channel: bool = True
    """Whether one channel per date is appended: fraction of finite bands per pixel (0..1)."""
    task: Literal["change-detection"] = "change-detection"
    """What the model does."""
    sensors: tuple[str, ...] = ("sentinel-2-l2a", "sentinel-1-rtc")
    """Collections the bands come from."""
    resolution_m: float = 10.0
    """Pixel size the model was trained at (metres)."""
    patch_size: int = 64
    """Side of the training chips (pixels)."""
    training_data: str = ""
    """Description of the training data (scene, periods, labels, held-out block)."""
    training_command: str = ""
    """Exact command that reproduces the weights."""
    decision_threshold: float = 0.5
    """Probability of change (1 - p(no_change)) at or above which a pixel is called changed; calibrated
    for the best F1 on the held-out validation block of the training data."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Validation metrics on the held-out block (flat ``"group.metric"`` keys)."""
    weights_file: str = ""
    """File name of the safetensors weights beside the card ('' until saved)."""
    weights_sha256: str = ""
    """Hex sha256 of the weights file ('' until saved)."""
    licence: str = "Apache-2.0"
    """Licence of the weights."""

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ModelError(f"invalid model card {self.name!r}: {problem}")

    @property
    def in_channels(self) -> int:
        """Channels per date the network expects (bands plus the optional validity channel)."""
        return len(self.bands) + int(self.validity_channel)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        data = asdict(self)
        data["classes"] = {
            str(k): {"name": v.name, "colour": list(v.colour)} for k, v in self.classes.items()
        }
        data["normalization"] = {k: list(v) for k, v in self.normalization.items()}
        for key in ("bands", "sensors"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Inverse of ``to_dict``; raises ``ModelError`` on missing or unknown fields."""
        try:
            kwargs = dict(data)
            kwargs["classes"] = {
                int(k): ClassInfo(v["name"], tuple(int(c) for c in v["colour"]))
                for k, v in data["classes"].items()
            }
            kwargs["normalization"] = {k: (float(m), float(s)) for k, (m, s) in data["normalization"].items()}
            kwargs["bands"] = tuple(data["bands"])
            kwargs["sensors"] = tuple(data.get("sensors", cls.sensors))
            kwargs["metrics"] = {k: float(v) for k, v in data.get("metrics", {}).items()}
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card is malformed: {exc!r}") from exc

    def to_json(self) -> str:
        """Card as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model card is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError("model card JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """Read a ``<name>.card.json`` file."""
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"model card not found: {path}") from exc


def _problems(card: ModelCard) -> list[str]:
    """Every inconsistency of a card, as messages (empty when valid)."""
    problems = []
    if not card.name or "/" in card.name:
        problems.append("name must be a non-empty file stem")
    if card.task != "change-detection":
        problems.append(f"task must be 'change-detection', got {card.task!r}")
    if card.architecture not in _ARCHITECTURES:
        problems.append(f"unknown architecture {card.architecture!r}; known: {', '.join(_ARCHITECTURES)}")
    if not card.bands or len(set(card.bands)) != len(card.bands):
        problems.append(f"bands must be non-empty and unique, got {card.bands}")
    if set(card.normalization) != set(card.bands):
        problems.append("normalization must have exactly one (mean, std) per band")
    elif any(not std > 0 for _, std in card.normalization.values()):
        problems.append("normalization std must be > 0")
    problems += _architecture_problems(card)
    if not card.resolution_m > 0 or card.patch_size < 1 or card.receptive_field_px < 1:
        problems.append("resolution_m, patch_size and receptive_field_px must be positive")
    if card.weights_sha256 and not _SHA256.match(card.weights_sha256):
        problems.append("weights_sha256 must be 64 lowercase hex digits")
    return problems


def _architecture_problems(card: ModelCard) -> list[str]:
    args = card.architecture_args
    expected = {"in_channels", "n_classes", "width", "depth"}
    if set(args) != expected:
        return [f"architecture_args must have keys {sorted(expected)}, got {sorted(args)}"]
    problems = []
    if args["in_channels"] != card.in_channels:
        problems.append(
            f"architecture in_channels={args['in_channels']} but {len(card.bands)} bands"
            f"{' + validity' if card.validity_channel else ''} give {card.in_channels}"
        )
    if sorted(card.classes) != list(range(args["n_classes"])):
        problems.append(f"classes must be 0..{args['n_classes'] - 1}")
    return problems
