"""Sentinel-2 rendering: SCL/cloud consistency, swath nodata, same-datatake tiles, encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import shapely
from shapely.geometry import shape

from eowatch.archive.clouds import CloudLayers, cloud_layers, scene_classification
from eowatch.archive.s2 import encode


def _read(archive: Path, item_id: str, key: str) -> np.ndarray:
    with rasterio.open(archive / "assets" / "sentinel-2-l2a" / item_id / f"{key}.tif") as src:
        return src.read(1)


def _items(archive: Path) -> list[dict]:
    paths = sorted((archive / "stac" / "items" / "sentinel-2-l2a").glob("*.json"))
    return [json.loads(p.read_text()) for p in paths]


def test_encoding() -> None:
    dn = encode(np.array([[-0.1, 0.0, 0.45]], np.float32), np.array([[True, True, False]]))
    assert dn.tolist() == [[1, 1000, 0]]


def test_scl_flags_true_clouds() -> None:
    rng = np.random.default_rng(0)
    layers = cloud_layers(rng, (400, 400), 0.5, 160.0, 40.0)
    surface = np.full((6, 400, 400), 0.05, np.float32)
    surface[3] = 0.4  # vegetation
    scl = scene_classification(rng, layers, surface, np.zeros((400, 400), bool), np.ones((400, 400), bool))
    a = layers.opacity.reshape(200, 2, 200, 2).mean(axis=(1, 3))
    assert np.isin(scl[a >= 0.35], (8, 9)).all()
    edge = (a >= 0.12) & (a < 0.35)
    flagged = np.isin(scl[edge], (8, 9, 10)).mean()
    assert 0.6 < flagged < 0.97  # cloud edges are partly missed, like Sen2Cor
    clear = (
        (a < 0.01)
        & (layers.shadow.reshape(200, 2, 200, 2).mean(axis=(1, 3)) < 0.05)
        & (layers.cirrus.reshape(200, 2, 200, 2).mean(axis=(1, 3)) < 0.05)
    )
    assert (scl[clear] == 4).mean() > 0.95
    assert (scl == 3).any()  # shadows are present and flagged


def test_clear_date_has_no_clouds() -> None:
    layers = cloud_layers(np.random.default_rng(1), (100, 100), 0.0, 160.0, 40.0)
    assert isinstance(layers, CloudLayers) and layers.opacity.max() == 0 and layers.shadow.max() == 0


def test_scl_and_reflectance_agree(small_archive: Path) -> None:
    for item in _items(small_archive):
        scl = _read(small_archive, item["id"], "scl")
        blue = _read(small_archive, item["id"], "blue").astype(np.float32) * 1e-4 - 0.1
        blue20 = blue.reshape(scl.shape[0], 2, scl.shape[1], 2).mean(axis=(1, 3))
        valid = scl > 0
        cover = 100 * np.isin(scl, (8, 9, 10)).sum() / max(1, valid.sum())
        assert abs(cover - item["properties"]["eo:cloud_cover"]) < 1e-3
        if (scl == 9).sum() > 100:
            assert np.median(blue20[scl == 9]) > 0.25  # thick clouds are bright
        if (scl == 4).sum() > 100 and cover < 30:
            assert np.median(blue20[scl == 4]) < 0.08  # clear vegetation is dark in blue


def test_swath_nodata(small_archive: Path) -> None:
    items = _items(small_archive)
    cut = [i for i in items if i["properties"]["s2:nodata_pixel_percentage"] > 0]
    assert cut, "some dates must be cut by the swath edge"
    for item in cut:
        red = _read(small_archive, item["id"], "red")
        scl = _read(small_archive, item["id"], "scl")
        nodata = red == 0
        assert nodata[:, 0].any() and not nodata[:, -1].any()  # western part missing
        any_nodata = nodata.reshape(scl.shape[0], 2, scl.shape[1], 2).any(axis=(1, 3))
        np.testing.assert_array_equal(any_nodata, scl == 0)
        for key in ("swir16", "swir22"):
            assert ((_read(small_archive, item["id"], key) == 0) == (scl == 0)).all()
        tile = shapely.box(*item["bbox"])
        assert shape(item["geometry"]).area < 0.999 * tile.area
        twin = item["id"].replace("31UES", "31UFS")
        assert (_read(small_archive, twin, "red") > 0).all()


def test_same_datatake_overlap(small_archive: Path) -> None:
    item = _items(small_archive)[2]
    west = item["id"] if "31UES" in item["id"] else item["id"].replace("31UFS", "31UES")
    east = west.replace("31UES", "31UFS")
    a, b = _read(small_archive, west, "nir"), _read(small_archive, east, "nir")
    # UES spans 599500..601780, UFS 600780..603060: overlap 1 km = 100 columns.
    np.testing.assert_array_equal(a[:, -100:], b[:, :100])
