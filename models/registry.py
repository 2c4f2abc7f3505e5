"""Plain, typed registry of the models shipped with eowatch (weights and cards in ``models/weights``)."""

from __future__ import annotations

import functools
from pathlib import Path

from eowatch.errors import ModelError

from .card import ARCHITECTURE_ARGS, ARCHITECTURE_TASKS, OPTIONAL_ARCHITECTURE_ARGS, ModelCard
from .landcover import LANDCOVER_ARCHITECTURE, LANDCOVER_ARCHITECTURE_ARGS, LANDCOVER_TASK
from .landcover_unet import LandCoverUNet
from .predict import SEMANTIC_TASK
from .siamese_semantic import SEMANTIC_ARCHITECTURE, SEMANTIC_ARCHITECTURE_ARGS, SiameseSemanticNet
from .vhr_change import VHR_ARCHITECTURE, VHR_ARCHITECTURE_ARGS, VHR_TASK, SiameseDiffUNet
from .vhr_landcover import (
    VHR_LANDCOVER_ARCHITECTURE,
    VHR_LANDCOVER_ARCHITECTURE_ARGS,
    VHR_LANDCOVER_TASK,
    VhrLandCoverUNet,
)
from .weights import ARCHITECTURES, LoadedModel, card_path, load_model

__all__ = [
    "GAP_MODELS",
    "MODELS",
    "TRAINING_COMMANDS",
    "WEIGHTS_DIR",
    "card_file_of",
    "card_of",
    "get",
    "list_models",
    "shipped_card_file",
]

#: Folder of the shipped weights, found relative to this module so it works from an installed package.
WEIGHTS_DIR: Path = Path(__file__).parent / "weights"

#: Registered model name -> card file (``<name>.card.json``; the weights file is named in the card).
MODELS: dict[str, Path] = {
    "siamese-s2s1-change": card_path(WEIGHTS_DIR, "siamese-s2s1-change"),
    "siamese-s2s1-gap-change": card_path(WEIGHTS_DIR, "siamese-s2s1-gap-change"),
    "crop-type-ltae": card_path(WEIGHTS_DIR, "crop-type-ltae"),
    "siamese-vhr-change": card_path(WEIGHTS_DIR, "siamese-vhr-change"),
    "siamese-s2s1-semantic": card_path(WEIGHTS_DIR, "siamese-s2s1-semantic"),
    "siamese-s2s1-conditional": card_path(WEIGHTS_DIR, "siamese-s2s1-conditional"),
    "landcover-s2-unet": card_path(WEIGHTS_DIR, "landcover-s2-unet"),
    "landcover-s2-seasonal-unet": card_path(WEIGHTS_DIR, "landcover-s2-seasonal-unet"),
    "landcover-vhr-unet": card_path(WEIGHTS_DIR, "landcover-vhr-unet"),
}
#: The gap model of a change model: it decides the pixel-transitions where either date has no S1
#: observation (a month without S1 acquisitions), which the change model was not trained for
#: (``pipelines.spec.ChangeSpec.gap_model``).
GAP_MODELS: dict[str, str] = {"siamese-s2s1-change": "siamese-s2s1-gap-change"}
#: How to reproduce each registered model's weights (shown when a registered card is not shipped).
TRAINING_COMMANDS: dict[str, str] = {
    "siamese-s2s1-change": "eowatch train",
    "siamese-s2s1-gap-change": "eowatch train siamese-s2s1-gap-change",
    "crop-type-ltae": "python -m eowatch.models.train_croptype",
    "siamese-vhr-change": "python -m eowatch.models.train_vhr",
    "siamese-s2s1-semantic": "python -m eowatch.models.train_semantic",
    "siamese-s2s1-conditional": "python -m eowatch.models.train_semantic --conditional",
    "landcover-s2-unet": "python -m eowatch.models.train_landcover",
    "landcover-s2-seasonal-unet": "python -m eowatch.models.train_landcover --periods 3",
    "landcover-vhr-unet": "python -m eowatch.models.train_vhr_landcover",
}


def _register_architecture(
    name: str,
    module: type[SiameseDiffUNet] | type[LandCoverUNet] | type[SiameseSemanticNet] | type[VhrLandCoverUNet],
    task: str,
    args: frozenset[str],
    optional: frozenset[str] = frozenset(),
) -> None:
    """Make the card checks (``card.ARCHITECTURE_TASKS``/``ARCHITECTURE_ARGS``) and the weights loader
    (``weights.ARCHITECTURES``) know an architecture defined outside ``siamese``/``temporal``.

    ``weights`` checks at import that its table and the card's name the same architectures, so an
    architecture added later goes into both tables together, here, before any card is read.
    """
    ARCHITECTURE_TASKS.setdefault(name, task)
    ARCHITECTURE_ARGS.setdefault(name, args)
    if optional:
        OPTIONAL_ARCHITECTURE_ARGS.setdefault(name, optional)
    ARCHITECTURES.setdefault(name, module)  # type: ignore[arg-type]


_register_architecture(VHR_ARCHITECTURE, SiameseDiffUNet, VHR_TASK, VHR_ARCHITECTURE_ARGS)
_register_architecture(SEMANTIC_ARCHITECTURE, SiameseSemanticNet, SEMANTIC_TASK, SEMANTIC_ARCHITECTURE_ARGS)
_register_architecture(
    LANDCOVER_ARCHITECTURE, LandCoverUNet, LANDCOVER_TASK, LANDCOVER_ARCHITECTURE_ARGS, frozenset({"periods"})
)
_register_architecture(
    VHR_LANDCOVER_ARCHITECTURE, VhrLandCoverUNet, VHR_LANDCOVER_TASK, VHR_LANDCOVER_ARCHITECTURE_ARGS
)


def card_file_of(name: str) -> Path:
    """Card path of a registered model; ``ModelError`` listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def shipped_card_file(name: str) -> Path:
    """Card path of a registered model whose card is shipped; ``ModelError`` saying how to train it
    otherwise (or listing the known names for an unknown one)."""
    card = card_file_of(name)
    if not card.is_file():
        raise ModelError(
            f"model {name!r} is registered but its card {card} is not shipped; train it with "
            f"`{TRAINING_COMMANDS.get(name, 'eowatch train')}` and copy the output into models/weights"
        )
    return card


def card_of(name: str) -> ModelCard:
    """The card of a shipped model, read without loading its weights (``ModelError`` as ``get``)."""
    return ModelCard.read(shipped_card_file(name))


@functools.lru_cache(maxsize=8)
def get(name: str) -> LoadedModel:
    """Load a registered model once per process (cached; the module is shared, eval mode, read only)."""
    return load_model(shipped_card_file(name))


def list_models() -> list[ModelCard]:
    """Cards of the registered models whose files are shipped, sorted by name."""
    return [ModelCard.read(MODELS[name]) for name in sorted(MODELS) if MODELS[name].is_file()]
