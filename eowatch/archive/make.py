"""Build an archive directory (atomically-ish) and read it back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import box

from eowatch.archive import items as docs
from eowatch.archive.cog import write_cog
from eowatch.archive.config import CRS, ArchiveConfig, Layout, s1_dates, s2_dates, vhr_dates
from eowatch.archive.phenology import AUTUMN_DOY
from eowatch.archive.s1 import render_s1
from eowatch.archive.s2 import acquisition, render_s2, swath_valid
from eowatch.archive.stac import lonlat_bbox
from eowatch.archive.truth import TRUTH_FILES, write_json, write_truth
from eowatch.archive.vhr import render_vhr
from eowatch.archive.world import World, build_world
from eowatch.errors import InputError

ARCHIVE_VERSION = 7
# Version 2 changed only the truth (a crop rotation is dated when the new crop shows, not at the
# harvest); version 3 only the VHR imagery (open water covers the field texture under a flood), and so
# did version 4 (a clear-cut shows slash, windrows and stumps, no longer its tree crowns) and version 5
# (a construction lot shows no drill rows or tramlines of the field it was). Version 6 added autumn
# phenology (``phenology.AUTUMN_DOY``): it changes nothing of a period without autumn days and every
# image of one with them. Version 7 changed only the VHR imagery again (a regional road is its 7 m
# carriageway drawn at 1 m from its centre line, no longer a staircase of 10 m blocks; ``vhr.VhrGround``).
# What an older archive lacks is rewritten in place; everything else of it is
# bit-identical to a fresh archive.
UPGRADES: dict[int, tuple[str, ...]] = {
    1: ("truth", "vhr"),
    2: ("vhr",),
    3: ("vhr",),
    4: ("vhr",),
    5: ("vhr",),
    6: ("vhr",),
}
Progress = Callable[[str, float], None]
_WORLD: World | None = None


def _init_worker(config_dict: dict[str, Any]) -> None:
    global _WORLD
    _WORLD = build_world(ArchiveConfig.from_dict(config_dict))


def _job(task: tuple[str, int, str]) -> list[dict[str, Any]]:
    """Render one acquisition, write its COGs under ``root`` and return its Item dicts."""
    kind, k, root = task
    assert _WORLD is not None
    world, out = _WORLD, Path(root)
    if kind == docs.S2:
        products = render_s2(world, k)
        _, _, _, edge = acquisition(world, k)
        result = []
        for p, tile in zip(products, world.layout.tiles, strict=True):
            g10 = tile.grid
            g20 = type(g10)(g10.minx, g10.maxy, 20.0, g10.width // 2, g10.height // 2)
            for key, arr in p.arrays.items():
                grid = g10 if arr.shape == g10.shape else g20
                write_cog(out / "assets" / docs.S2 / p.item_id / f"{key}.tif", arr, grid, 0, key == "scl")
            result.append(docs.s2_item(p, g10, _footprint(world, tile.grid, edge)))
        return result
    if kind == docs.S1:
        p = render_s1(world, k)
        for key, arr in p.arrays.items():
            write_cog(out / "assets" / docs.S1 / p.item_id / f"{key}.tif", arr, world.layout.s1, float("nan"))
        return [docs.s1_item(p, world.layout.s1)]
    item_id, when, image = render_vhr(world, k)
    write_cog(out / "assets" / docs.VHR / item_id / "image.tif", image, world.layout.vhr, None)
    return [docs.vhr_item(item_id, when, world.layout.vhr)]


def _footprint(world: World, grid: Any, edge: float | None) -> shapely.Geometry:
    """Valid-data footprint (UTM) of a tile: its bounds, cut by the swath edge when there is one."""
    tile = box(*grid.bbox)
    if edge is None:
        return tile
    valid = swath_valid(world, edge)[grid.window_in(world.layout.world)]
    cols = valid.argmax(axis=1)
    top, bottom = cols[0], cols[-1]
    x0, y0, x1, y1 = grid.bbox
    cut = shapely.Polygon([(x0 + top * grid.res, y1), (x1, y1), (x1, y0), (x0 + bottom * grid.res, y0)])
    return shapely.intersection(tile, cut).normalize()


def _tasks(config: ArchiveConfig, root: Path) -> list[tuple[str, int, str]]:
    tasks = [(docs.S2, k, str(root)) for k in range(len(s2_dates(config)))]
    if config.include_s1:
        tasks += [(docs.S1, k, str(root)) for k in range(len(s1_dates(config)))]
    if config.include_vhr:
        tasks += [(docs.VHR, k, str(root)) for k in range(len(vhr_dates(config)))]
    return tasks


def _run(
    config: ArchiveConfig, tasks: list[tuple[str, int, str]], world: World
) -> Iterator[list[dict[str, Any]]]:
    if config.workers <= 1 or len(tasks) < 4:
        global _WORLD
        _WORLD = world
        try:
            yield from map(_job, tasks)
        finally:
            _WORLD = None
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        config.workers, mp_context=ctx, initializer=_init_worker, initargs=(config.to_dict(),)
    ) as pool:
        yield from pool.map(_job, tasks)


def _token(config: ArchiveConfig) -> str:
    ident = json.dumps(config.identity(), sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:12] + f"-{os.getpid()}"


def _check_target(out_dir: Path, config: ArchiveConfig) -> Path | None:
    """Return the manifest path when ``out_dir`` already holds this archive; raise if it holds other data."""
    manifest = out_dir / "archive.json"
    if manifest.is_file():
        try:
            existing = json.loads(manifest.read_text())["config"]
        except (ValueError, KeyError) as exc:
            raise InputError(f"{manifest} is not a valid archive manifest; remove {out_dir}") from exc
        if existing == config.identity():
            return manifest
        raise InputError(f"{out_dir} holds an archive of a different config; choose another --out")
    others = [p for p in out_dir.iterdir() if not p.name.startswith(".partial-")] if out_dir.is_dir() else []
    if others:
        raise InputError(f"{out_dir} is not empty and not an eowatch archive; choose an empty --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a directory")
    return None


def make_archive(out_dir: Path, config: ArchiveConfig, progress: Progress | None = None) -> Path:
    """Generate the synthetic archive for ``config`` into ``out_dir``; return the path of archive.json.

    The archive is built in ``out_dir/.partial-<token>`` and moved into place; ``archive.json`` is
    written last, so its presence marks a finished archive. A finished archive of the same config is a
    no-op; any other non-empty ``out_dir`` raises :class:`InputError`.
    """
    out_dir = Path(out_dir)
    done = _check_target(out_dir, config)
    if done is not None:
        _upgrade(out_dir, config, progress or (lambda _msg, _frac: None))
        return done
    report = progress or (lambda _msg, _frac: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    root = out_dir / f".partial-{_token(config)}"
    root.mkdir()
    try:
        _build(config, root, report)
        for entry in ("assets", "stac", "truth"):
            os.replace(root / entry, out_dir / entry)
        os.replace(root / "archive.json", out_dir / "archive.json")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report("done", 1.0)
    return out_dir / "archive.json"


def _reaches_autumn(config: ArchiveConfig) -> bool:
    """Whether any day of the archive's period is on or after ``AUTUMN_DOY`` in its year."""
    end = config.end if config.end.year == config.start.year else dt.date(config.start.year, 12, 31)
    return end.timetuple().tm_yday >= AUTUMN_DOY


def _upgrade(out_dir: Path, config: ArchiveConfig, report: Progress) -> None:
    """Rewrite what changed since a finished archive's older version (``UPGRADES``: the truth, the VHR
    images) and keep the rest.

    The new files are written beside the old ones and swapped in before the manifest's version is
    raised, so an interrupted upgrade is redone on the next call. Other old versions raise.
    """
    manifest_path = out_dir / "archive.json"
    manifest = json.loads(manifest_path.read_text())
    version = manifest.get("eowatch_archive_version", 1)
    if version == ARCHIVE_VERSION:
        return
    if version not in UPGRADES:
        raise InputError(
            f"{out_dir} holds an eowatch archive of version {version} (this eowatch writes "
            f"{ARCHIVE_VERSION}); remove it to regenerate"
        )
    if version < 6 and _reaches_autumn(config):
        raise InputError(
            f"{out_dir} holds an eowatch archive of version {version} whose period "
            f"{config.start}..{config.end} was rendered without autumn phenology (this eowatch writes "
            f"{ARCHIVE_VERSION}); remove it to regenerate"
        )
    parts = UPGRADES[version]
    report(f"upgrade of the {' and '.join(parts) or 'manifest'} (archive version {version})", 0.0)
    root = out_dir / f".partial-{_token(config)}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    try:
        world = build_world(config)
        if "truth" in parts:
            write_truth(world, root)
            old = out_dir / ".truth-old"
            shutil.rmtree(old, ignore_errors=True)
            if (out_dir / "truth").exists():  # absent only if an earlier upgrade stopped right here
                os.replace(out_dir / "truth", old)
            os.replace(root / "truth", out_dir / "truth")
            shutil.rmtree(old, ignore_errors=True)
        if "vhr" in parts:
            vhr_tasks = [task for task in _tasks(config, root) if task[0] == docs.VHR]
            for items in _run(config, vhr_tasks, world):  # rendered and written as by a fresh build
                for item in items:
                    rel = Path("assets") / docs.VHR / item["id"] / "image.tif"
                    os.replace(root / rel, out_dir / rel)
        manifest["eowatch_archive_version"] = ARCHIVE_VERSION
        write_json(root / "archive.json", manifest)
        os.replace(root / "archive.json", manifest_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report("done", 1.0)


def _build(config: ArchiveConfig, root: Path, report: Progress) -> None:
    layout = Layout.from_config(config)
    tasks = _tasks(config, root)
    report("scene", 0.0)
    world = build_world(config)
    write_truth(world, root)
    counts: dict[str, int] = {}
    for i, item_docs in enumerate(_run(config, tasks, world)):
        for doc in item_docs:
            cid = doc["collection"]
            counts[cid] = counts.get(cid, 0) + 1
            write_json(root / "stac" / "items" / cid / f"{doc['id']}.json", doc)
        report(f"{tasks[i][0]} {tasks[i][1] + 1}", 0.05 + 0.93 * (i + 1) / len(tasks))
    cols = docs.collections(layout, config.start, config.end, config.include_s1, config.include_vhr)
    for col in cols:
        write_json(root / "stac" / "collections" / f"{col['id']}.json", col)
    write_json(
        root / "archive.json",
        {
            "eowatch_archive_version": ARCHIVE_VERSION,
            "config": config.identity(),
            "crs": CRS,
            "aoi_bbox": list(layout.aoi.bbox),
            "aoi_bbox_lonlat": lonlat_bbox(layout.aoi.bbox),
            "vhr_bbox": list(layout.vhr.bbox),
            "s2_tiles": {t.code: list(t.grid.bbox) for t in layout.tiles},
            "s1_bbox": list(layout.s1.bbox),
            "collections": [c["id"] for c in cols],
            "item_counts": dict(sorted(counts.items())),
            "truth": TRUTH_FILES,
            "start": config.start.isoformat(),
            "end": config.end.isoformat(),
        },
    )


def load_manifest(archive_dir: Path) -> dict:
    """The archive's manifest (``archive.json``); :class:`InputError` if missing."""
    path = Path(archive_dir) / "archive.json"
    if not path.is_file():
        raise InputError(f"{archive_dir} is not an eowatch archive (no archive.json); run `archive make`")
    return json.loads(path.read_text())


def load_collections(archive_dir: Path) -> list[dict]:
    """Collection documents in manifest order."""
    root = Path(archive_dir)
    ids = load_manifest(root)["collections"]
    return [json.loads((root / "stac" / "collections" / f"{cid}.json").read_text()) for cid in ids]


def load_items(archive_dir: Path, asset_base_url: str) -> list[dict]:
    """All Items as plain dicts (no links), sorted by collection then datetime and id.

    Asset hrefs become ``f"{asset_base_url.rstrip('/')}/{relpath}"`` with ``relpath`` relative to the
    archive directory, e.g. ``assets/sentinel-2-l2a/<item-id>/red.tif``.
    """
    root = Path(archive_dir).resolve()
    base = str(asset_base_url).rstrip("/")
    out = []
    for cid in load_manifest(root)["collections"]:
        for path in sorted((root / "stac" / "items" / cid).glob("*.json")):
            doc = json.loads(path.read_text())
            doc["links"] = []
            for a in doc["assets"].values():
                rel = os.path.relpath(os.path.normpath(path.parent / a["href"]), root)
                a["href"] = f"{base}/{Path(rel).as_posix()}"
            out.append(doc)
    out.sort(key=lambda d: (d["collection"], d["properties"]["datetime"], d["id"]))
    return out
