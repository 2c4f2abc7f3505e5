"""Archive-level behaviour: layout, STAC validity, COG layout, idempotence, refusal, load_items."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from eowatch.archive import (
    ArchiveConfig,
    load_collections,
    load_items,
    load_manifest,
    make_archive,
    validate_archive,
)
from eowatch.archive.cog import cog_problems
from eowatch.errors import InputError


def test_valid(small_archive: Path) -> None:
    assert validate_archive(small_archive) == []


def test_manifest(small_archive: Path, small_config: ArchiveConfig) -> None:
    m = load_manifest(small_archive)
    assert m["eowatch_archive_version"] == 7 and m["crs"] == "EPSG:32631"
    assert m["config"] == small_config.identity()
    assert m["aoi_bbox"] == [600000.0, 5640000.0, 602560.0, 5642560.0]
    assert m["collections"] == ["sentinel-2-l2a", "sentinel-1-grd", "vhr-rgbn"]
    assert m["item_counts"] == {"sentinel-2-l2a": 14, "sentinel-1-grd": 5, "vhr-rgbn": 3}
    assert all((small_archive / rel).is_file() for rel in m["truth"].values())
    assert [c["id"] for c in load_collections(small_archive)] == m["collections"]


def test_cog_layout(small_archive: Path) -> None:
    files = sorted((small_archive / "assets").rglob("*.tif"))
    assert len(files) == 14 * 7 + 5 * 2 + 3
    for f in files[::7]:
        assert cog_problems(f) == []


def test_validate_reports_problems(small_archive: Path, tmp_path: Path) -> None:
    assert validate_archive(tmp_path) != []
    item = next((small_archive / "stac" / "items" / "sentinel-2-l2a").glob("*.json"))
    doc = json.loads(item.read_text())
    del doc["properties"]["proj:code"]
    doc["assets"]["red"]["raster:bands"][0]["scale"] = 1.0
    from eowatch.archive.validate import _OWN, _STAC, _schema_errors

    assert _schema_errors(doc, f"{_STAC}item-spec/json-schema/item.json", "x") == []
    assert len(_schema_errors(doc, f"{_OWN}sentinel-2-l2a.json", "x")) >= 2


def test_noop_and_refusals(small_archive: Path, small_config: ArchiveConfig, tmp_path: Path) -> None:
    before = (small_archive / "archive.json").stat().st_mtime_ns
    assert make_archive(small_archive, small_config) == small_archive / "archive.json"
    assert (small_archive / "archive.json").stat().st_mtime_ns == before
    with pytest.raises(InputError):
        make_archive(small_archive, dataclasses.replace(small_config, seed=8))
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(InputError):
        make_archive(tmp_path, small_config)
    with pytest.raises(InputError):
        load_manifest(tmp_path)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_older_archive_is_upgraded_in_place(
    version: int, small_archive: Path, small_config: ArchiveConfig, tmp_path: Path
) -> None:
    """A version-1 archive (rotations dated at the harvest, flooded fields showing their drill rows at
    1 m) gets its truth and VHR images rewritten, a version-2 archive (the same drill rows) or version-3
    archive (clear-cuts showing their tree crowns) its VHR images, and so does a version-5 archive (no
    autumn phenology, but its March period has no autumn day) or version-6 archive (regional roads as
    10 m blocks at 1 m); all end equal to a fresh archive, and the Sentinel assets are left as they
    are."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(small_archive, old)
    manifest = json.loads((old / "archive.json").read_text())
    manifest["eowatch_archive_version"] = version
    (old / "archive.json").write_text(json.dumps(manifest))
    if version == 1:
        (old / "truth" / "change_start.tif").write_bytes(b"stale")
        (old / "truth" / "events.geojson").unlink()
    vhr = sorted((old / "assets" / "vhr-rgbn").rglob("image.tif"))
    assert vhr
    for path in vhr:
        path.write_bytes(b"stale")
    s2 = next((old / "assets" / "sentinel-2-l2a").rglob("*.tif"))
    os.utime(s2, (1_000_000, 1_000_000))
    make_archive(old, small_config)
    fresh = [*(small_archive / "truth").iterdir(), *(small_archive / "assets").rglob("*.tif")]
    for f in sorted(fresh):
        rel = f.relative_to(small_archive)
        assert (old / rel).read_bytes() == f.read_bytes(), rel
    assert s2.stat().st_mtime == 1_000_000  # not rewritten
    assert load_manifest(old)["eowatch_archive_version"] == 7
    assert not [p.name for p in old.iterdir() if p.name.startswith(".")]
    manifest["eowatch_archive_version"] = 0
    (old / "archive.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="version 0"):
        make_archive(old, small_config)


def test_older_archive_reaching_autumn_is_refused(
    small_archive: Path, small_config: ArchiveConfig, tmp_path: Path
) -> None:
    """An archive written before autumn phenology (version 5) whose period has autumn days would need
    every image re-rendered: it is refused with the way out, not upgraded or silently kept."""
    import datetime as dt
    import shutil

    autumn = dataclasses.replace(small_config, end=dt.date(2026, 9, 30))
    old = tmp_path / "old"
    shutil.copytree(small_archive, old)
    manifest = json.loads((old / "archive.json").read_text())
    manifest["eowatch_archive_version"] = 5
    manifest["config"] = autumn.identity()
    (old / "archive.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"without autumn phenology.*remove it to regenerate"):
        make_archive(old, autumn)
    assert load_manifest(old)["eowatch_archive_version"] == 5


def test_load_items_hrefs(small_archive: Path) -> None:
    items = load_items(small_archive, "http://127.0.0.1:8123/")
    assert len(items) == 22
    item = next(i for i in items if i["collection"] == "sentinel-2-l2a")
    assert item["links"] == []
    assert item["assets"]["red"]["href"] == (
        f"http://127.0.0.1:8123/assets/sentinel-2-l2a/{item['id']}/red.tif"
    )
    local = load_items(small_archive, str(small_archive))
    assert all(Path(a["href"]).is_file() for i in local for a in i["assets"].values())
    ids = [i["id"] for i in items if i["collection"] == "sentinel-2-l2a"]
    assert ids[0].startswith("S2A_31UES_20260301_0_L2A"[:4]) and len(set(ids)) == len(ids)


def test_s2_item_fields(small_archive: Path) -> None:
    items = [i for i in load_items(small_archive, ".") if i["collection"] == "sentinel-2-l2a"]
    p = items[0]["properties"]
    assert p["proj:code"] == "EPSG:32631" and p["instruments"] == ["msi"]
    assert p["constellation"] == "sentinel-2" and p["platform"] in {
        "sentinel-2a",
        "sentinel-2b",
        "sentinel-2c",
    }
    assert {i["properties"]["grid:code"] for i in items} == {"MGRS-31UES", "MGRS-31UFS"}
    red = items[0]["assets"]["red"]
    assert red["raster:bands"][0] == {
        "data_type": "uint16",
        "nodata": 0,
        "offset": -0.1,
        "scale": 0.0001,
        "spatial_resolution": 10,
        "unit": "reflectance",
    }
    assert red["eo:bands"][0]["common_name"] == "red"
    assert red["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert items[0]["assets"]["swir16"]["proj:transform"][0] == 20.0
    covers = [i["properties"]["eo:cloud_cover"] for i in items]
    assert min(covers) < 10 and max(covers) > 60
