"""Plain, typed registry of the models shipped with eowatch (weights and cards in ``models/weights``)."""

from __future__ import annotations

import functools
from pathlib import Path

from eowatch.errors import ModelError

from .card import ModelCard
from .weights import LoadedModel, card_path, load_model

__all__ = ["MODELS", "TRAINING_COMMANDS", "WEIGHTS_DIR", "card_file_of", "get", "list_models"]

#: Folder of the shipped weights, found relative to this module so it works from an installed package.
WEIGHTS_DIR: Path = Path(__file__).parent / "weights"

#: Registered model name -> card file (``<name>.card.json``; the weights file is named in the card).
MODELS: dict[str, Path] = {
    "siamese-s2s1-change": card_path(WEIGHTS_DIR, "siamese-s2s1-change"),
    "crop-type-ltae": card_path(WEIGHTS_DIR, "crop-type-ltae"),
}
#: How to reproduce each registered model's weights (shown when a registered card is not shipped).
TRAINING_COMMANDS: dict[str, str] = {
    "siamese-s2s1-change": "eowatch train",
    "crop-type-ltae": "python -m eowatch.models.train_croptype",
}


def card_file_of(name: str) -> Path:
    """Card path of a registered model; ``ModelError`` listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


@functools.lru_cache(maxsize=8)
def get(name: str) -> LoadedModel:
    """Load a registered model once per process (cached; the module is shared, eval mode, read only)."""
    card = card_file_of(name)
    if not card.is_file():
        raise ModelError(
            f"model {name!r} is registered but its card {card} is not shipped; train it with "
            f"`{TRAINING_COMMANDS.get(name, 'eowatch train')}` and copy the output into models/weights"
        )
    return load_model(card)


def list_models() -> list[ModelCard]:
    """Cards of the registered models whose files are shipped, sorted by name."""
    return [ModelCard.read(MODELS[name]) for name in sorted(MODELS) if MODELS[name].is_file()]
