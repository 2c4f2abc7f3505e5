"""Offline validation of an archive: STAC 1.1.0 core schemas bundled with pystac, the archive's own
extension-field schemas, COG layout of every raster, and truth-grid checks. Nothing is fetched."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_specifications
import pystac.validation
import rasterio
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from eowatch.archive.cog import cog_problems
from eowatch.errors import InputError

_STAC = "https://schemas.stacspec.org/v1.1.0/"
_OWN = "https://eowatch.invalid/archive/schemas/"


@cache
def _registry() -> Registry:
    bundled = Path(pystac.validation.__file__).parent / "jsonschemas"
    resources: list[tuple[str, Resource]] = []

    def add(uri: str, path: Path) -> None:
        resources.append((uri, Resource.from_contents(json.loads(path.read_text()), DRAFT7)))

    for path in sorted((bundled / "stac-spec" / "v1.1.0").glob("*.json")):
        spec = (
            "collection-spec"
            if path.stem == "collection"
            else ("catalog-spec" if path.stem == "catalog" else "item-spec")
        )
        add(f"{_STAC}{spec}/json-schema/{path.name}", path)
    # common.json declares "$id": ".../commonjson" (sic); register it under that id too.
    add(f"{_STAC}item-spec/json-schema/commonjson", bundled / "stac-spec" / "v1.1.0" / "common.json")
    for path in sorted((bundled / "geojson").glob("*.json")):
        add(f"https://geojson.org/schema/{path.name}", path)
    for path in sorted((Path(__file__).parent / "schemas").glob("*.json")):
        add(f"{_OWN}{path.name}", path)
    return jsonschema_specifications.REGISTRY.with_resources(resources).crawl()


@cache
def _validator(uri: str) -> jsonschema.Draft7Validator:
    registry = _registry()
    schema = registry.contents(uri)
    return jsonschema.Draft7Validator(schema, registry=registry)


def _schema_errors(doc: dict[str, Any], uri: str, label: str) -> list[str]:
    errors = sorted(_validator(uri).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{label}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}" for e in errors]


def validate_archive(archive_dir: Path) -> list[str]:
    """Problems found in ``archive_dir`` (an empty list means valid).

    Checks: manifest fields; every Collection against STAC 1.1.0 ``collection.json``; every Item against
    STAC 1.1.0 ``item.json`` and this archive's schema for its collection (``schemas/<collection>.json``);
    every asset and truth raster exists and is a COG (tiled 256/512, DEFLATE/ZSTD with predictor,
    internal overviews, COG layout); truth rasters lie on the AOI (10 m) / VHR (1 m) grids.
    """
    root = Path(archive_dir)
    try:
        manifest = json.loads((root / "archive.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"archive.json: cannot read manifest ({exc.__class__.__name__})"]
    problems = [
        f"archive.json: missing {k!r}"
        for k in (
            "eowatch_archive_version",
            "config",
            "crs",
            "aoi_bbox",
            "aoi_bbox_lonlat",
            "vhr_bbox",
            "collections",
            "item_counts",
            "truth",
            "start",
            "end",
        )
        if k not in manifest
    ]
    if problems:
        return problems
    for cid in manifest["collections"]:
        path = root / "stac" / "collections" / f"{cid}.json"
        if not path.is_file():
            problems.append(f"{path.relative_to(root)}: missing")
            continue
        doc = json.loads(path.read_text())
        problems += _schema_errors(doc, f"{_STAC}collection-spec/json-schema/collection.json", path.name)
        problems += _check_items(root, cid, manifest["item_counts"].get(cid, 0))
    problems += _check_truth(root, manifest)
    return problems


def _check_items(root: Path, cid: str, expected: int) -> list[str]:
    problems = []
    paths = sorted((root / "stac" / "items" / cid).glob("*.json"))
    if len(paths) != expected:
        problems.append(f"{cid}: {len(paths)} item files, manifest says {expected}")
    for path in paths:
        doc = json.loads(path.read_text())
        label = f"{cid}/{path.name}"
        problems += _schema_errors(doc, f"{_STAC}item-spec/json-schema/item.json", label)
        problems += _schema_errors(doc, f"{_OWN}{cid}.json", label)
        for key, a in doc.get("assets", {}).items():
            file = (path.parent / a["href"]).resolve()
            if not file.is_file():
                problems.append(f"{label}: asset {key} missing ({a['href']})")
                continue
            problems += [f"{label}: {p}" for p in cog_problems(file)]
            problems += _check_asset_grid(file, a, label, key)
    return problems


def _check_asset_grid(file: Path, a: dict[str, Any], label: str, key: str) -> list[str]:
    with rasterio.open(file) as src:
        shape = [src.height, src.width]
        transform = list(src.transform)[:6]
    if a.get("proj:shape") != shape or [float(v) for v in a.get("proj:transform", [])[:6]] != transform:
        return [f"{label}: asset {key} proj:shape/proj:transform do not match the file"]
    return []


def _check_truth(root: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    for name, rel in manifest["truth"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"truth {name}: missing {rel}")
            continue
        if path.suffix != ".tif":
            continue
        problems += [f"truth {name}: {p}" for p in cog_problems(path)]
        with rasterio.open(path) as src:
            bbox, res = list(src.bounds), src.res
        want, want_res = (
            (manifest["vhr_bbox"], 1.0) if name.startswith("vhr_") else (manifest["aoi_bbox"], 10.0)
        )
        if bbox != [float(v) for v in want] or res != (want_res, want_res):
            problems.append(f"truth {name}: grid {bbox} @ {res} differs from {want} @ {want_res}")
    return problems


def ensure_valid(archive_dir: Path) -> None:
    """Raise :class:`InputError` naming the first problems when the archive is invalid."""
    problems = validate_archive(archive_dir)
    if problems:
        raise InputError(f"{archive_dir} is not a valid archive: {'; '.join(problems[:3])}")
