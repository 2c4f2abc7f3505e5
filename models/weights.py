"""Save and load model weights as safetensors beside a JSON card; loading never unpickles."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import safetensors.torch
from safetensors import SafetensorError
from torch import nn

from eowatch.errors import ModelError

from .card import ARCHITECTURE_TASKS, ModelCard
from .siamese import SiameseChangeNet
from .temporal import LTAEClassifier

__all__ = [
    "ARCHITECTURES",
    "LoadedModel",
    "build_module",
    "card_path",
    "load_model",
    "record_metrics",
    "save_model",
    "sha256_file",
]

#: Architecture name in a card -> the ``nn.Module`` class built from its ``architecture_args``. Every class
#: has ``config`` (its constructor arguments) and ``receptive_field`` (pixels).
ARCHITECTURES: dict[str, type[SiameseChangeNet] | type[LTAEClassifier]] = {
    "SiameseChangeNet": SiameseChangeNet,
    "LTAEClassifier": LTAEClassifier,
}
assert set(ARCHITECTURES) == set(ARCHITECTURE_TASKS), "card and weights must know the same architectures"

_CARD_SUFFIX = ".card.json"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference: the module (eval mode, no grad) and its card."""

    module: SiameseChangeNet | LTAEClassifier
    """Network with the card's weights, in eval mode, parameters frozen (class per ``card.architecture``)."""
    card: ModelCard
    """Card the module was built from."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path(directory: Path, name: str) -> Path:
    """Path of the card of model ``name`` in ``directory``."""
    return Path(directory) / f"{name}{_CARD_SUFFIX}"


def build_module(card: ModelCard) -> SiameseChangeNet | LTAEClassifier:
    """Construct the (untrained) network that a card describes."""
    try:
        cls = ARCHITECTURES[card.architecture]
    except KeyError:
        raise ModelError(f"model {card.name!r}: unknown architecture {card.architecture!r}") from None
    try:
        return cls(**card.architecture_args)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model {card.name!r}: cannot build {card.architecture}: {exc}") from exc


def save_model(module: SiameseChangeNet | LTAEClassifier, card: ModelCard, directory: Path) -> ModelCard:
    """Write ``<name>.safetensors`` and ``<name>.card.json`` into ``directory``.

    The card written (and returned) carries the weights file name, its sha256 and the module's receptive
    field. Both files are written to temporary names and renamed, so a crash never leaves a card that points
    at half-written weights.
    """
    if type(module).__name__ != card.architecture:
        raise ModelError(f"module is a {type(module).__name__}, the card says {card.architecture}")
    if module.config != card.architecture_args:
        raise ModelError(f"module {module.config} does not match card architecture {card.architecture_args}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{card.name}.safetensors"
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    tmp = weights.with_suffix(".safetensors.tmp")
    # One metadata key only: safetensors writes a metadata map in random order, which would change the
    # file's bytes (and its sha256) from one save of the same weights to the next.
    metadata = {"eowatch": json.dumps({"name": card.name, "version": card.version}, sort_keys=True)}
    safetensors.torch.save_file(state, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # package data: readable by every user of an installed package
    os.replace(tmp, weights)
    final = replace(
        card,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        receptive_field_px=module.receptive_field,
    )
    target = card_path(directory, card.name)
    tmp_card = target.with_suffix(".json.tmp")
    tmp_card.write_text(final.to_json(), encoding="utf-8")
    os.replace(tmp_card, target)
    return final


def record_metrics(directory: Path, name: str, scores: Mapping[str, float]) -> LoadedModel:
    """Add ``scores`` to the ``metrics`` of model ``name``'s card in ``directory`` and reload the model.

    The weights are rewritten from the loaded state, byte-identical (same sha256); only the card changes.
    """
    model = load_model(card_path(directory, name))
    save_model(model.module, replace(model.card, metrics={**model.card.metrics, **scores}), Path(directory))
    return load_model(card_path(directory, name))


def load_model(path_or_name: str | Path) -> LoadedModel:
    """Load a model from a card path, a weights path, or a registered model name.

    Verifies the sha256 recorded in the card, builds the module from the card's architecture arguments and
    loads the safetensors weights strictly. Raises ``ModelError`` on a missing file, a checksum mismatch or
    weights that do not fit the architecture.
    """
    card_file = _resolve_card(path_or_name)
    card = ModelCard.read(card_file)
    weights = card_file.parent / card.weights_file
    if not card.weights_file or not weights.is_file():
        raise ModelError(f"model {card.name!r}: weights file {weights} not found")
    actual = sha256_file(weights)
    if actual != card.weights_sha256:
        raise ModelError(
            f"model {card.name!r}: sha256 of {weights.name} is {actual}, card says "
            f"{card.weights_sha256 or '(none)'}; the weights are corrupt or not this card's"
        )
    module = build_module(card)
    if module.receptive_field != card.receptive_field_px:
        raise ModelError(
            f"model {card.name!r}: card says receptive field {card.receptive_field_px} px, "
            f"the architecture has {module.receptive_field} px"
        )
    _load_state(module, weights, card.name)
    module.eval().requires_grad_(False)
    return LoadedModel(module=module, card=card)


def _load_state(module: nn.Module, weights: Path, name: str) -> None:
    try:
        state = safetensors.torch.load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"model {name!r}: cannot read {weights.name}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"model {name!r}: weights do not fit the card's architecture: {exc}") from exc


def _resolve_card(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.name.endswith(".safetensors"):
        return path.with_name(path.name.removesuffix(".safetensors") + _CARD_SUFFIX)
    if path.name.endswith(_CARD_SUFFIX):
        return path
    if isinstance(path_or_name, str) and os.sep not in path_or_name:
        from .registry import card_file_of  # registry imports this module

        return card_file_of(path_or_name)
    raise ModelError(f"cannot load {path_or_name!r}: give a model name, a .card.json or a .safetensors path")
