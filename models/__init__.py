"""Change-detection models: network (``siamese``), cards and weights, registry, labels, metrics, training.

Data (``dataset``), model (``siamese``) and task (``train``) are kept apart, TorchGeo style.
"""

from typing import Any

from .card import DEFAULT_BANDS, ClassInfo, ModelCard, change_classes
from .dataset import ChangeChipDataset, open_cube, read_truth
from .labels import ever_changed, transition_labels
from .metrics import binary_scores, flatten_scores, per_type_scores
from .predict import check_inputs, predict_change, predict_change_batch, preprocess
from .registry import get, list_models
from .siamese import SiameseChangeNet
from .weights import LoadedModel, load_model, save_model

__all__ = [
    "DEFAULT_BANDS",
    "ChangeChipDataset",
    "ClassInfo",
    "LoadedModel",
    "ModelCard",
    "SiameseChangeNet",
    "TrainConfig",
    "binary_scores",
    "change_classes",
    "check_inputs",
    "ever_changed",
    "flatten_scores",
    "get",
    "list_models",
    "load_model",
    "open_cube",
    "per_type_scores",
    "predict_change",
    "predict_change_batch",
    "preprocess",
    "read_truth",
    "save_model",
    "train_change_model",
    "transition_labels",
]


def __getattr__(name: str) -> Any:
    # The training task loads lazily so `python -m eowatch.models.train` does not import itself twice and
    # inference workers do not import the training code.
    if name in {"TrainConfig", "train_change_model"}:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
