"""Model card: everything needed to rebuild, feed and judge a shipped model, stored beside its weights.

One card type serves every model family: change detection (``SiameseChangeNet``, two dates of image
chips) and crop-type mapping (``LTAEClassifier``, a per-pixel monthly series). Fields that only one family
uses have neutral defaults, so older cards without them still load unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eowatch.errors import ModelError
from eowatch.legend import CHANGE_COLOURS, CHANGE_TYPES

__all__ = [
    "ARCHITECTURE_ARGS",
    "ARCHITECTURE_TASKS",
    "DEFAULT_BANDS",
    "DERIVED_INPUTS",
    "FLAG_INPUTS",
    "OPTIONAL_ARCHITECTURE_ARGS",
    "S1_BANDS",
    "S2_BANDS",
    "ClassInfo",
    "ModelCard",
    "change_classes",
]

#: S2 L2A reflectance bands of the cubes (B02, B03, B04, B08, B11, B12).
S2_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
#: S1 backscatter bands of the cubes (dB).
S1_BANDS: tuple[str, ...] = ("vv_db", "vh_db")
#: Channel order per date of the shipped S2 + S1 change model.
DEFAULT_BANDS: tuple[str, ...] = (*S2_BANDS, *S1_BANDS)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Architecture name -> the task it serves (the classes live in ``models.weights.ARCHITECTURES``).
ARCHITECTURE_TASKS: dict[str, str] = {"SiameseChangeNet": "change-detection", "LTAEClassifier": "crop_type"}
#: Constructor arguments each architecture's card must give (``architecture_args`` keys).
ARCHITECTURE_ARGS: dict[str, frozenset[str]] = {
    "SiameseChangeNet": frozenset({"in_channels", "n_classes", "width", "depth"}),
    "LTAEClassifier": frozenset({"in_channels", "n_classes", "d_model", "n_head", "d_k", "hidden"}),
}
#: Constructor arguments a card may give besides the required ones.
OPTIONAL_ARCHITECTURE_ARGS: dict[str, frozenset[str]] = {"SiameseChangeNet": frozenset({"season_channels"})}
#: Per-step inputs a temporal card may list besides its bands: derived indices (normalised like bands,
#: so they need ``normalization`` entries) and 0/1 observation flags (fed as they are).
DERIVED_INPUTS: tuple[str, ...] = ("ndvi",)
FLAG_INPUTS: tuple[str, ...] = ("s2_valid", "s1_valid")


@dataclass(frozen=True)
class ClassInfo:
    """One output class of the model."""

    name: str
    """Class name: a change type from ``eowatch.legend.CHANGE_TYPES`` or a crop class."""
    colour: tuple[int, int, int]
    """Display colour, RGB 0-255."""


def change_classes(n_classes: int = len(CHANGE_TYPES)) -> dict[int, ClassInfo]:
    """Classes 0..n_classes-1 from the shared legend."""
    return {c: ClassInfo(CHANGE_TYPES[c], tuple(CHANGE_COLOURS[c])) for c in range(n_classes)}


@dataclass(frozen=True)
class ModelCard:
    """Metadata of a model of any family; round-trips through JSON (``to_json``/``from_json``)."""

    name: str
    """Registry name, also the stem of the weight and card files (``<name>.safetensors``)."""
    version: str
    """Version of the trained weights (semantic version)."""
    architecture: Literal[
        "SiameseChangeNet",
        "LTAEClassifier",
        "SiameseDiffUNet",
        "LandCoverUNet",
        "SiameseSemanticNet",
        "VhrLandCoverUNet",
    ]
    """Class in ``eowatch.models`` that the weights belong to."""
    architecture_args: dict[str, int]
    """Constructor arguments of ``architecture`` (``ARCHITECTURE_ARGS`` lists the keys per class)."""
    bands: tuple[str, ...]
    """Cube variables stacked as channels per date, in this order."""
    normalization: dict[str, tuple[float, float]]
    """Per band (and derived index) (mean, std) in its units; inputs are fed as ``(x - mean) / std``."""
    classes: dict[int, ClassInfo]
    """Output channel index (change-type or crop-class code) -> class name and colour."""
    receptive_field_px: int
    """Side of the input window one output pixel depends on (pixels); tiles need a halo of half that."""
    validity_channel: bool = True
    """Whether one channel per date is appended: fraction of finite bands per pixel (0..1)."""
    task: Literal[
        "change-detection",
        "crop_type",
        "vhr-change-detection",
        "land-cover",
        "semantic-change-detection",
        "vhr-land-cover",
    ] = "change-detection"
    """What the model does; must be the task of ``architecture``. ``change-detection`` models run on the
    monitoring flow's monthly S2 + S1 composites; ``vhr-change-detection`` models compare VHR image pairs;
    ``land-cover`` models segment one S2 composite period; ``vhr-land-cover`` models segment one VHR image."""
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
    months: tuple[int, ...] = ()
    """Temporal models: months of the year (1-12) the model was trained on; steps of other months are
    ignored at inference. Empty for models without a time axis."""
    inputs_per_step: tuple[str, ...] = ()
    """Temporal models: channel order of one time step, from ``bands``, ``DERIVED_INPUTS`` and
    ``FLAG_INPUTS``. Empty: the channels are ``bands`` (plus the validity channel where set)."""
    label_mapping: dict[str, dict[str, str]] = field(default_factory=dict)
    """Foreign label vocabulary (e.g. ``"worldcereal_croptype"``) -> label (as text) -> class name of
    this model, ``""`` for "unknown, not scored"; key ``"*"`` gives the class of every unlisted label."""
    change_legend: dict[int, ClassInfo] = field(default_factory=dict)
    """Semantic change models: classes of the binary change map (0 no change, 1 change) with colours;
    ``classes`` then holds the legend of the from/to maps (0 no change, then land-cover classes)."""

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ModelError(f"invalid model card {self.name!r}: {problem}")

    @property
    def in_channels(self) -> int:
        """Channels per date (or time step) the network expects."""
        if self.inputs_per_step:
            return len(self.inputs_per_step)
        return len(self.bands) + int(self.validity_channel)

    @property
    def continuous_inputs(self) -> tuple[str, ...]:
        """Inputs normalised with ``normalization``: the bands and any derived index, in input order."""
        if not self.inputs_per_step:
            return self.bands
        return tuple(i for i in self.inputs_per_step if i not in FLAG_INPUTS)

    def class_code(self, name: str) -> int:
        """Output index of the class called ``name`` (``ModelError`` when the model has no such class)."""
        for code, info in self.classes.items():
            if info.name == name:
                return code
        raise ModelError(f"model {self.name!r} has no class {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        data = asdict(self)
        data["classes"] = {
            str(k): {"name": v.name, "colour": list(v.colour)} for k, v in self.classes.items()
        }
        data["change_legend"] = {
            str(k): {"name": v.name, "colour": list(v.colour)} for k, v in self.change_legend.items()
        }
        data["normalization"] = {k: list(v) for k, v in self.normalization.items()}
        for key in ("bands", "sensors", "months", "inputs_per_step"):
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
            kwargs["change_legend"] = {
                int(k): ClassInfo(v["name"], tuple(int(c) for c in v["colour"]))
                for k, v in data.get("change_legend", {}).items()
            }
            kwargs["normalization"] = {k: (float(m), float(s)) for k, (m, s) in data["normalization"].items()}
            kwargs["bands"] = tuple(data["bands"])
            kwargs["sensors"] = tuple(data.get("sensors", cls.sensors))
            kwargs["metrics"] = {k: float(v) for k, v in data.get("metrics", {}).items()}
            kwargs["months"] = tuple(int(m) for m in data.get("months", ()))
            kwargs["inputs_per_step"] = tuple(data.get("inputs_per_step", ()))
            kwargs["label_mapping"] = {
                str(vocab): {str(k): str(v) for k, v in table.items()}
                for vocab, table in data.get("label_mapping", {}).items()
            }
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
    if card.architecture not in ARCHITECTURE_TASKS:
        known = ", ".join(ARCHITECTURE_TASKS)
        return [*problems, f"unknown architecture {card.architecture!r}; known: {known}"]
    if card.task != ARCHITECTURE_TASKS[card.architecture]:
        problems.append(
            f"task must be {ARCHITECTURE_TASKS[card.architecture]!r} for {card.architecture}, "
            f"got {card.task!r}"
        )
    if not card.bands or len(set(card.bands)) != len(card.bands):
        problems.append(f"bands must be non-empty and unique, got {card.bands}")
    problems += _temporal_problems(card)
    if set(card.normalization) != set(card.continuous_inputs):
        problems.append("normalization must have exactly one (mean, std) per band and derived input")
    elif any(not std > 0 for _, std in card.normalization.values()):
        problems.append("normalization std must be > 0")
    problems += _architecture_problems(card)
    if not card.resolution_m > 0 or card.patch_size < 1 or card.receptive_field_px < 1:
        problems.append("resolution_m, patch_size and receptive_field_px must be positive")
    if card.weights_sha256 and not _SHA256.match(card.weights_sha256):
        problems.append("weights_sha256 must be 64 lowercase hex digits")
    return problems


def _temporal_problems(card: ModelCard) -> list[str]:
    """Checks of the time-step fields (months, per-step inputs, label mapping)."""
    problems = []
    if any(not 1 <= m <= 12 for m in card.months) or len(set(card.months)) != len(card.months):
        problems.append(f"months must be unique months of the year 1-12, got {card.months}")
    if card.architecture == "LTAEClassifier" and not (card.months and card.inputs_per_step):
        problems.append("a temporal model needs months and inputs_per_step")
    allowed = {*card.bands, *DERIVED_INPUTS, *FLAG_INPUTS}
    unknown = [i for i in card.inputs_per_step if i not in allowed]
    if unknown or len(set(card.inputs_per_step)) != len(card.inputs_per_step):
        problems.append(f"inputs_per_step must be unique names from bands, {DERIVED_INPUTS}, {FLAG_INPUTS}")
    elif card.inputs_per_step and not set(card.bands) <= set(card.inputs_per_step):
        problems.append("inputs_per_step must include every band")
    names = {info.name for info in card.classes.values()} | {""}
    for vocab, table in card.label_mapping.items():
        wrong = sorted({v for v in table.values() if v not in names})
        if wrong:
            problems.append(f"label_mapping[{vocab!r}] maps to unknown classes {wrong}")
    return problems


def _architecture_problems(card: ModelCard) -> list[str]:
    args = card.architecture_args
    expected = ARCHITECTURE_ARGS[card.architecture]
    optional = OPTIONAL_ARCHITECTURE_ARGS.get(card.architecture, frozenset())
    if not expected <= set(args) <= expected | optional:
        extra = f" (optional: {sorted(optional)})" if optional else ""
        return [f"architecture_args must have keys {sorted(expected)}{extra}, got {sorted(args)}"]
    problems = []
    if args["in_channels"] != card.in_channels:
        problems.append(
            f"architecture in_channels={args['in_channels']} but {len(card.bands)} bands"
            f"{' + validity' if card.validity_channel and not card.inputs_per_step else ''}"
            f"{' (inputs per step)' if card.inputs_per_step else ''} give {card.in_channels}"
        )
    if sorted(card.classes) != list(range(args["n_classes"])):
        problems.append(f"classes must be 0..{args['n_classes'] - 1}")
    return problems
