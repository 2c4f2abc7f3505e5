"""Models: change detection (``siamese``) and crop-type mapping (``temporal``, ``croptype``), with cards and
weights, registry, labels, metrics and training.

Data (``dataset``), model (``siamese``, ``temporal``) and task (``train``, ``train_croptype``) are kept
apart, TorchGeo style.
"""

from typing import Any

from .card import DEFAULT_BANDS, ClassInfo, ModelCard, change_classes
from .croptype import CROP_CLASSES, CropTypeMap, predict_croptype
from .dataset import ChangeChipDataset, open_cube, read_truth
from .engine import EngineConfig, run_tiled
from .labels import ever_changed, transition_labels
from .metrics import binary_scores, flatten_scores, per_type_scores
from .predict import check_inputs, predict_change, predict_change_batch, predict_change_series, preprocess
from .registry import get, list_models
from .siamese import SiameseChangeNet
from .temporal import LTAEClassifier
from .weights import LoadedModel, load_model, save_model

__all__ = [
    "CROP_CLASSES",
    "DEFAULT_BANDS",
    "ChangeChipDataset",
    "ClassInfo",
    "CropTrainConfig",
    "CropTypeMap",
    "EngineConfig",
    "LTAEClassifier",
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
    "predict_change_series",
    "predict_croptype",
    "preprocess",
    "read_truth",
    "run_tiled",
    "save_model",
    "train_change_model",
    "train_croptype_sets",
    "transition_labels",
]


def __getattr__(name: str) -> Any:
    # The training task loads lazily so `python -m eowatch.models.train` does not import itself twice and
    # inference workers do not import the training code.
    if name in {"TrainConfig", "train_change_model"}:
        from . import train

        return getattr(train, name)
    if name in {"CropTrainConfig", "train_croptype_sets"}:
        from . import train_croptype

        return getattr(train_croptype, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
