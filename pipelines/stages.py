"""The monitoring run's stages as thin functions over references (paths, URLs, scheduler addresses).

``flows.py`` wraps each in a Prefect task; the CLI and tests may call them directly. Each stage is
idempotent: it skips work its ledger or a finished output already records. The optional per-model stages
(crop types, land cover, VHR change, VHR land cover) live in ``pipelines.model_stages``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eowatch import __version__
from eowatch.errors import CatalogError, StorageError
from eowatch.pipelines import cube as cube_stage
from eowatch.pipelines import inference as change_stage
from eowatch.pipelines.dask_map import map_batches
from eowatch.pipelines.evaluate import evaluate_change
from eowatch.pipelines.ledger import RunLayout, check_output_location, write_atomic
from eowatch.pipelines.phases import add_phases, stage_phases
from eowatch.pipelines.publish import change_statistics, render_quicklook, write_summary
from eowatch.pipelines.reader import StacRegionReader, redact
from eowatch.pipelines.spec import CubeSpec, MonitorConfig, stable_token
from eowatch.pipelines.stac_output import publish_catalog
from eowatch.pipelines.zarr_store import read_attrs

log = logging.getLogger("eowatch")
Logger = Callable[[str], None]
#: Model fields of ``MonitorConfig`` added after runs were made: left out of the run token when unset, so
#: the outputs of a run without them are still recognised as its own.
OPTIONAL_STAGE_MODELS: tuple[str, ...] = (
    "vhr_change_model",
    "landcover_model",
    "vhr_landcover_model",
    "semantic_change_model",
)


@dataclass(frozen=True)
class Run:
    """A prepared run: its config, resolved cube spec and output layout (all plain data)."""

    config: MonitorConfig
    spec: CubeSpec
    layout: RunLayout
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.layout.token

    def is_complete(self) -> bool:
        """The change cube is complete and the summary, the run's last write, exists."""
        return self.change_complete() and self.layout.summary.exists()

    def change_complete(self) -> bool:
        return self.store_complete(self.layout.change)

    def store_complete(self, path: Any) -> bool:
        """The store at ``path`` was marked complete (its last write) by a run with this run's token."""
        attrs = read_attrs(path)
        return attrs.get("eowatch_status") == "complete" and attrs.get("eowatch_run_token") == self.token


def prepare_run(config: MonitorConfig, with_model: bool = True) -> Run:
    """Validate everything that can be checked before any I/O-heavy work; resolve grid and token.

    The run token identifies what a run computes (AOI, dates, grid, collections, the weights of every
    model it runs, software version), not where the catalog is served from: the STAC URL and the output
    folder are left out, so the same run against a restarted local server resumes or is recognised as
    done. A stage model's weights (name, version, sha256) join the token only when the run has that
    stage, so runs without the optional stages keep their tokens; new weights for a stage model make
    another run, whose outputs are never mistaken for the old ones'.

    Args:
        config: the run.
        with_model: check the change model against the cube (False for a cube-only run, e.g. training).

    Raises:
        InputError, StorageError, ModelError: bad parameters, output location or model name.
    """
    spec = config.cube_spec()
    model_info: dict[str, str] | None = None
    if with_model:
        from eowatch.models.predict import check_inputs
        from eowatch.models.registry import card_of

        card = card_of(config.change.model)
        check_inputs(card, spec.variables, spec.grid.resolution)
        model_info = {"name": card.name, "version": card.version, "sha256": card.weights_sha256}
    stage_models = _stage_model_info(config) if with_model else {}
    if with_model and config.change.gap_model:
        gap = card_of(config.change.gap_model)
        stage_models["gap_model"] = {"name": gap.name, "version": gap.version, "sha256": gap.weights_sha256}
    out = check_output_location(config.out)
    # Where the catalog and the assets are served from is not what the run computes: not in the token.
    served_from = ("out", "truth_dir", "stac_url", "asset_stores")
    params = {k: v for k, v in config.to_dict().items() if k not in served_from}
    for optional in OPTIONAL_STAGE_MODELS:  # runs without these stages keep their tokens
        if params.get(optional) is None:
            params.pop(optional, None)
    identity: dict[str, Any] = {"params": params, "spec": spec.to_dict(), "model": model_info}
    if stage_models:
        identity["stage_models"] = stage_models
    token = stable_token({**identity, "eowatch": __version__})
    layout = RunLayout(out, token)
    existing = read_attrs(layout.change).get("eowatch_run_token")
    if existing and existing != token:
        raise StorageError(
            f"{layout.change} holds the output of a different run ({existing}); choose another output folder"
        )
    provenance = {
        "eowatch_version": __version__,
        "eowatch_run_token": token,
        "parameters": {
            **params,
            "stac_url": redact(config.stac_url),
            "asset_stores": [redact(s) for s in config.asset_stores],
        },
        "model": model_info,
        **({"stage_models": stage_models} if stage_models else {}),
        "cube_spec": spec.to_dict(),
    }
    return Run(config, spec, layout, provenance)


def _stage_model_info(config: MonitorConfig) -> dict[str, dict[str, str]]:
    """Name, version and weights sha256 of each optional stage model the run has (crop type, land cover,
    semantic change, VHR change, VHR land cover), by config field; ``ModelError`` for an unknown or
    unshipped model."""
    from eowatch.models.registry import card_of

    info = {}
    for name in ("crop_model", *OPTIONAL_STAGE_MODELS):
        model = getattr(config, name)
        if model is not None:
            card = card_of(model)  # the stages load the weights on the workers, not here
            info[name] = {"name": card.name, "version": card.version, "sha256": card.weights_sha256}
    return info


def search_items(run: Run, info: Logger = log.info) -> list[dict[str, Any]]:
    """Search the catalog for the run's collections, one after the other; nothing is written or pinned.

    Raises:
        CatalogError, EmptySearchError, InputError: as ``pipelines.search.search_catalog``.
    """
    from eowatch.pipelines.search import SearchRequest, search_catalog

    cfg = run.config
    items: list[dict[str, Any]] = []
    for coll in (c for c in (cfg.s2_collection, cfg.s1_collection, cfg.vhr_collection) if c):
        request = SearchRequest(
            collections=(coll,),
            bbox=cfg.bbox if cfg.intersects is None else None,
            intersects=cfg.intersects,
            start=cfg.start,
            end=cfg.end,
            max_cloud_cover=cfg.max_cloud_cover if coll == cfg.s2_collection else None,
        )
        found = search_catalog(cfg.stac_url, request)
        info(f"{coll}: {len(found)} items")
        items.extend(found)
    return items


def search_stage(run: Run, info: Logger = log.info, warn: Logger = log.warning) -> Path:
    """Search the catalog and record the result for the other stages; ``warn`` when a period has no
    acquisition of a sensor the change model reads (``coverage.sensor_gap_warning``).

    A resumed run searches again (asset URLs may have changed: a restarted server, re-signed URLs) but
    must find exactly the items its first attempt recorded, with the same content (properties such as
    ``updated``, asset checksums; ``search.item_content``), so a half-built cube never mixes inputs:
    an item reprocessed in place under the same id counts as changed.

    Raises:
        CatalogError: a resumed run's search returns other items, or changed ones, than its first attempt.
    """
    from eowatch.pipelines.coverage import run_sensor_gap_warnings
    from eowatch.pipelines.search import item_tokens

    items = search_items(run, info)
    check_assets(run, items)  # malformed items and hrefs outside the asset stores fail before any read
    if run.layout.items.exists():
        pinned = item_tokens(json.loads(run.layout.items.read_text()))
        now = item_tokens(items)
        changed = sorted(i for i in pinned.keys() & now.keys() if pinned[i] != now[i])
        if pinned.keys() != now.keys() or changed:
            example = f", e.g. {changed[0]!r} changed" if changed else ""
            raise CatalogError(
                f"the catalog now returns other items for this run than when it started "
                f"({len(now.keys() - pinned.keys())} new, {len(pinned.keys() - now.keys())} gone, "
                f"{len(changed)} changed{example}); start it again in another output folder"
            )
        info("resuming: the catalog returned the same items as the first attempt")
    model = run.provenance.get("model")
    change_model = model["name"] if model else None
    for gap_warning in run_sensor_gap_warnings(items, run.spec, change_model, run.config):
        warn(gap_warning)
    run.layout.work.mkdir(parents=True, exist_ok=True)
    write_atomic(run.layout.items, json.dumps(items))
    return run.layout.items


def check_assets(run: Run, items: list[dict[str, Any]]) -> None:
    """Check every found item before anything is read: well-formed, with an allowed href for each band.

    Raises:
        CatalogError: an item lacks an id, collection, geometry or datetime.
        InputError: an item has no asset for a band the run reads.
        AssetError: an asset the run reads has no href.
        RefusedAssetError: an href lies outside the run's asset stores.
    """
    from eowatch.pipelines.assets import resolve_asset_keys
    from eowatch.pipelines.search import check_item
    from eowatch.pipelines.vhr import VHR_BANDS

    cfg, spec = run.config, run.spec
    # The cube resolves S2/S1 bands to asset keys (pipelines.assets); VHR bands are band names of one
    # multi-band asset, which the reader resolves itself.
    by_key = {cfg.s2_collection: [*spec.s2_bands, "scl"], cfg.s1_collection: list(spec.s1_bands)}
    reader = StacRegionReader(asset_stores=cfg.asset_stores)
    for item in items:
        check_item(item)
        collection = item["collection"]
        if collection in by_key:
            bands = list(resolve_asset_keys(item, by_key[collection]).values())
        else:
            bands = list(VHR_BANDS) if collection == cfg.vhr_collection else []
        reader.check([item], bands)


def progress_logger(info: Logger, what: str) -> Callable[[int, int], None]:
    """A ``map_batches`` progress callback that logs ``what: done/total batches (pct%)`` every 10 %."""
    state = {"last": -1}

    def report(done: int, total: int) -> None:
        pct = int(100 * done / total)
        if pct // 10 != state["last"] // 10 or done == total:
            state["last"] = pct
            info(f"{what}: {done}/{total} batches ({pct}%)")

    return report


def item_ids(run: Run) -> dict[str, list[str]]:
    """The ids of the run's pinned search results (``search_stage``) per collection."""
    return ids_by_collection(json.loads(run.layout.items.read_text()))


def ids_by_collection(items: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Item ids per collection, in the items' order."""
    ids: dict[str, list[str]] = {}
    for d in items:
        ids.setdefault(d.get("collection", "?"), []).append(d["id"])
    return ids


def _phases_file(run: Run, stage: str) -> Any:
    return run.layout.work / "phases" / f"{stage}.json"


def record_phases(run: Run, stage: str, stats: list[dict[str, Any]]) -> None:
    """Add the chunks' worker seconds per phase (read, composite, infer, write) to the stage's record.

    The record lives in the run's work folder and sums over the attempts of a resumed run (chunks of an
    attempt that was killed before its stage ended are not counted: their stats were never returned).
    """
    path = _phases_file(run, stage)
    earlier = json.loads(path.read_text()) if path.exists() else {}
    write_atomic(path, json.dumps(add_phases(earlier, stage_phases(stats))))


def worker_phases(run: Run) -> dict[str, dict[str, float]]:
    """Worker seconds per phase of each chunked stage (cube, vhr, change) recorded by this run."""
    out = {}
    for stage in (
        "cube",
        "vhr",
        "change",
        "crop_type",
        "vhr_change",
        "landcover",
        "vhr_landcover",
        "semantic_change",
    ):
        path = _phases_file(run, stage)
        if path.exists():
            out[stage] = json.loads(path.read_text())
    return out


def cube_stage_run(run: Run, client: Any, info: Logger = log.info, per_task: int = 2) -> Path:
    """Build the analysis cube (skipping chunks already in the ledger) and publish it atomically."""
    if run.store_complete(run.layout.cube):
        info("analysis cube already complete")
        return run.layout.cube
    prov = {**run.provenance, "stac_items": item_ids(run)}
    store = cube_stage.init_cube(run.layout, run.spec, prov)
    inputs = cube_stage.CubeInputs(
        spec=run.spec.to_dict(),
        items_path=str(run.layout.items),
        store_path=str(store),
        ledger_path=str(run.layout.ledger("cube").root),
        reader=StacRegionReader(asset_stores=run.config.asset_stores),
    )
    batches = cube_stage.pending_batches(run.spec, run.layout, "cube", per_task)
    total = sum(1 for _ in run.spec.grid.chunks())
    info(f"cube: {total} chunks of {run.spec.grid.chunk} px, {total - sum(map(len, batches))} already done")
    stats = map_batches(client, cube_stage.build_batch, batches, inputs, progress_logger(info, "cube"))
    record_phases(run, "cube", stats)
    return cube_stage.finalize_cube(run.layout)


def vhr_stage_run(run: Run, client: Any, info: Logger = log.info) -> Path | None:
    """Load the VHR acquisitions onto the nested grid; None when the run has no VHR collection or items."""
    from eowatch.pipelines import vhr

    coll = run.config.vhr_collection
    if not coll:
        return None
    if run.store_complete(run.layout.out / "vhr.zarr"):
        return run.layout.out / "vhr.zarr"
    found = vhr_layout(run)
    if found is None:
        info(f"{coll}: no acquisition over the grid; skipping the VHR cube")
        return None
    items, grid, days = found
    prov = {**run.provenance, "stac_items": {coll: sorted(d["id"] for d in items)}}
    store = vhr.init_vhr(run.layout, grid, days, prov)
    inputs = vhr.VhrInputs(
        grid=grid.to_dict(),
        days=tuple(str(d) for d in days),
        collection=coll,
        items_path=str(run.layout.items),
        store_path=str(store),
        ledger_path=str(run.layout.ledger("vhr").root),
        reader=StacRegionReader(asset_stores=run.config.asset_stores),
    )
    done = run.layout.ledger("vhr").done()
    todo = [(k.row, k.col) for k in grid.chunks() if k not in done]
    info(
        f"VHR: {len(days)} dates at {grid.resolution:g} m on a {grid.shape[1]}x{grid.shape[0]} px nested grid"
    )
    stats = map_batches(
        client, vhr.build_vhr_batch, [[k] for k in todo], inputs, progress_logger(info, "vhr")
    )
    record_phases(run, "vhr", stats)
    return vhr.finalize_vhr(run.layout)


def vhr_layout(run: Run) -> tuple[list[dict[str, Any]], Any, Any] | None:
    """The run's VHR items, nested VHR grid and acquisition days (``datetime64[D]``), from the pinned
    search results; None without a VHR collection or acquisition over the grid."""
    from eowatch.pipelines import vhr

    coll = run.config.vhr_collection
    if not coll:
        return None
    items = [d for d in json.loads(run.layout.items.read_text()) if d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, items)
    return None if grid is None else (items, grid, vhr.acquisition_days(items))


def prepare_change(run: Run) -> change_stage.InferenceInputs:
    """Create (or reopen) the change cube's staging store; return what inference tasks need.

    The halo defaults to just over the model's receptive radius, so chunk results equal whole-image
    inference.
    """
    from eowatch.models.registry import get

    change = run.config.change
    get(change.model)  # the weights are checked here, before any task starts
    halo = change_stage.default_halo(change)
    prov = {**run.provenance, "stac_items": item_ids(run), "halo_px": halo}
    store = change_stage.init_change(run.layout, run.spec, prov, change.gap_model)
    return change_stage.InferenceInputs(
        cube_spec=run.spec.to_dict(),
        change=run.config.change,
        cube_path=str(run.layout.cube),
        store_path=str(store),
        ledger_path=str(run.layout.ledger("change").root),
        halo=halo,
        precision=run.config.change.precision,
    )


def change_stage_run(run: Run, client: Any, info: Logger = log.info) -> Path:
    """Infer change over every chunk of the cube (with a halo) and publish the change cube atomically."""
    if run.change_complete():
        return run.layout.change
    inputs = prepare_change(run)
    batches = cube_stage.pending_batches(run.spec, run.layout, "change", run.config.change.regions_per_task)
    stats = map_batches(client, change_stage.infer_batch, batches, inputs, progress_logger(info, "inference"))
    record_phases(run, "change", stats)
    return change_stage.finalize_change(run.layout)


def publish_stage(run: Run, timings: dict[str, float], info: Logger = log.info) -> dict[str, Any]:
    """Statistics, evaluation against truth (when given), quicklook and the summary JSON."""
    # model_stages builds on this module's Run and helpers: imported here, not at the top (a cycle).
    from eowatch.pipelines.coverage import sensor_gaps
    from eowatch.pipelines.model_stages import model_outputs, model_summaries
    from eowatch.pipelines.search import items_token

    t0 = time.perf_counter()
    stats = change_statistics(run.layout.change, run.spec)
    evaluation = None
    if run.config.truth_dir:
        evaluation = evaluate_change(run.layout.change, run.spec, Path(run.config.truth_dir))
    models_found = model_summaries(run)  # writes the models' quicklooks: before the catalog
    render_quicklook(run.layout.cube, run.layout.change, run.spec, run.layout.quicklook)
    catalog = publish_catalog(run.layout, run.config.start, run.config.end)  # after the data it describes
    items = json.loads(run.layout.items.read_text())
    ids = ids_by_collection(items)
    phases = worker_phases(run)
    totals: dict[str, float] = {}
    for per_stage in phases.values():
        totals = add_phases(totals, per_stage)
    timings = {**timings, "publish": round(time.perf_counter() - t0, 2)}
    timings["total"] = round(sum(timings.values()), 2)
    summary = {
        "run_token": run.token,
        "status": "complete",
        "output": {
            "change_cube": run.layout.change.as_uri(),
            "analysis_cube": run.layout.cube.as_uri(),
            "quicklook": run.layout.quicklook.as_uri(),
            **(
                {"vhr_cube": (run.layout.out / "vhr.zarr").as_uri()}
                if (run.layout.out / "vhr.zarr").exists()
                else {}
            ),
            **model_outputs(run),
            "stac_catalog": catalog.as_uri(),
            "summary": run.layout.summary.as_uri(),
        },
        "area_km2": round(run.spec.grid.area_km2, 4),
        "grid": run.spec.grid.to_dict(),
        "periods": [list(p) for p in run.spec.periods],
        "items": {k: len(v) for k, v in ids.items()},
        # What the catalog returned, content included: a re-run compares it (``catalog_drift``).
        "items_token": items_token(items),
        # Periods without any acquisition of a collection: the change model's input lacks that sensor.
        "sensor_gaps": sensor_gaps(items, run.spec),
        "model": run.provenance["model"],
        **({"gap_model": gap} if (gap := run.provenance.get("stage_models", {}).get("gap_model")) else {}),
        "changes_found": stats,
        "evaluation": evaluation,
        **models_found,
        "timings_s": timings,
        # Summed over every chunk task on the workers (core seconds with one thread per worker).
        "worker_seconds": {"by_stage": phases, "by_phase": totals},
    }
    write_summary(run.layout.summary, summary)
    run.layout.clean_work()
    info(f"summary written to {run.layout.summary}")
    return summary


def existing_summary(run: Run) -> dict[str, Any]:
    """The summary of a run that already completed (a re-run is a no-op)."""
    if run.layout.summary.exists():
        return json.loads(run.layout.summary.read_text())
    return {
        "run_token": run.token,
        "status": "complete",
        "output": {"change_cube": run.layout.change.as_uri()},
    }
