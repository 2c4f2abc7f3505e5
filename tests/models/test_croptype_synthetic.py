"""The shipped crop-type model on a freshly generated archive whose seed (7) was never trained on.

The archive covers April-June only (the model was trained on March-August), so this also checks that a
subset of the months works. The analysis cube is built by the same cube stage as every monitoring run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eowatch.models import registry
from eowatch.models.croptype import centroids_path, load_centroids
from eowatch.models.train_croptype import evaluate_synthetic

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_crop_type_on_a_fresh_archive(small_archive: Path, tmp_path: Path) -> None:
    from eowatch.pipelines.training import build_croptype_cube

    cube = build_croptype_cube(small_archive, tmp_path / "cube", workers=1)
    model = registry.get("crop-type-ltae")
    centroids = load_centroids(centroids_path(registry.WEIGHTS_DIR, model.card.name), model.card)
    scores = evaluate_synthetic(model, Path(cube), small_archive / "truth", centroids)
    assert scores["model.n"] > 30_000  # labelled pixels of the 256 x 256 px scene
    assert scores["model.oa"] >= 0.85
    assert scores["model.oa"] > scores["ndvi_centroid.oa"] + 0.05
    assert scores["model.kappa"] > scores["ndvi_centroid.kappa"]
    assert scores["model.oa"] > scores["majority.oa"] + 0.3
    for crop in ("winter_cereal", "maize", "grassland"):
        assert scores[f"model.{crop}.f1"] >= 0.7, crop
