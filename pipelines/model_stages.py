"""The optional per-model stages of a monitoring run: crop types, land cover, VHR change, VHR land cover,
semantic change.

Each runner is a thin stage like those of ``pipelines.stages``: it maps its model's batch function
(``pipelines.crops``, ``pipelines.landcover``, ``pipelines.vhr_change``, ``pipelines.vhr_landcover``,
``pipelines.semantic_change``) over
the chunks its ledger does not record yet and publishes the map atomically; it returns None when the run
has no such model. ``model_outputs`` and ``model_summaries`` give the parts of the run summary these
stages add.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from eowatch.infra.storage import Location
from eowatch.pipelines import cube as cube_stage
from eowatch.pipelines.dask_map import map_batches
from eowatch.pipelines.stages import Logger, Run, item_ids, log, progress_logger, record_phases, vhr_layout
from eowatch.pipelines.vhr_change import vhr_change_outputs
from eowatch.pipelines.vhr_landcover import vhr_landcover_outputs


def vhr_change_skipped(run: Run) -> str | None:
    """Why a run with a VHR change model has no VHR pair to compare (None when it has one)."""
    found = vhr_layout(run)
    if found is None:
        return f"no {run.config.vhr_collection} acquisition over the grid"
    if len(found[2]) < 2:
        return f"only one {run.config.vhr_collection} acquisition date ({found[2][0]})"
    return None


def vhr_change_stage_run(
    run: Run, client: Any, info: Logger = log.info, warn: Logger = log.warning
) -> Location | None:
    """Detect change between consecutive VHR dates (skipping chunks already in the ledger) and publish the
    map; None when the run has no VHR change model, or (with a warning) no pair of VHR dates.

    Raises:
        ModelError: the model does not fit the VHR cube (bands, pixel size), before any inference.
    """
    from eowatch.models.registry import card_of
    from eowatch.pipelines import vhr_change
    from eowatch.pipelines.zarr_store import open_group

    name = run.config.vhr_change_model
    if not name:
        return None
    out = run.layout.out / f"{vhr_change.STORE}.zarr"
    if run.store_complete(out):
        return out
    found, skipped = vhr_layout(run), vhr_change_skipped(run)
    if skipped or found is None:
        warn(f"VHR change ({name}) skipped: {skipped}")
        return None
    _, grid, days = found
    card = card_of(name)
    vhr_bands = [k for k, arr in open_group(run.layout.vhr).arrays() if arr.ndim == 3]  # (time, y, x)
    vhr_change.check_vhr_cube(card, vhr_bands, grid.resolution)
    pairs = vhr_change.consecutive_pairs(len(days))
    prov = {
        **run.provenance,
        "stac_items": {run.config.vhr_collection: item_ids(run).get(run.config.vhr_collection, [])},
    }
    store = vhr_change.init_vhr_change(run.layout, grid, days, pairs, name, prov)
    inputs = vhr_change.VhrChangeInputs(
        grid=grid.to_dict(),
        pairs=pairs,
        model=name,
        vhr_path=str(run.layout.vhr),
        store_path=str(store),
        ledger_path=str(run.layout.ledger(vhr_change.STORE).root),
        threshold=card.decision_threshold,
    )
    done = run.layout.ledger(vhr_change.STORE).done()
    todo = [[(k.row, k.col)] for k in grid.chunks() if k not in done]  # 1024 px chunks: one per task
    info(f"VHR change: {name} over {len(pairs)} pairs of consecutive dates, {len(todo)} chunks to do")
    stats = map_batches(
        client, vhr_change.vhr_change_batch, todo, inputs, progress_logger(info, "vhr change")
    )
    record_phases(run, vhr_change.STORE, stats)
    return vhr_change.finalize_vhr_change(run.layout)


def _cube_model_stage_run(
    run: Run,
    client: Any,
    info: Logger,
    name: str,
    stage: Any,
    init: Callable[..., Location],
    batch: Callable[..., Any],
    finalize: Callable[[Any], Location],
    inputs: Callable[..., Any],
    label: str,
) -> Location:
    """The shared body of the stages over the analysis cube: initialise ``<stage.STORE>.zarr`` (unless a
    finished one is there), map ``batch`` over the chunks its ledger does not record yet, publish it.

    ``inputs`` builds the stage's frozen inputs from ``cube_spec``, ``model``, ``cube_path``,
    ``store_path`` and ``ledger_path``; ``label`` names the stage in the log and the progress lines.
    """
    out = run.layout.out / f"{stage.STORE}.zarr"
    if run.store_complete(out):
        return out
    prov = {**run.provenance, "stac_items": item_ids(run)}
    store = init(run.layout, run.spec, name, prov)
    stage_inputs = inputs(
        cube_spec=run.spec.to_dict(),
        model=name,
        cube_path=str(run.layout.cube),
        store_path=str(store),
        ledger_path=str(run.layout.ledger(stage.STORE).root),
    )
    per_task = run.config.change.regions_per_task
    batches = cube_stage.pending_batches(run.spec, run.layout, stage.STORE, per_task)
    info(f"{label}: {name} over {len(run.spec.periods)} periods, {sum(map(len, batches))} chunks to do")
    stats = map_batches(client, batch, batches, stage_inputs, progress_logger(info, label))
    record_phases(run, stage.STORE, stats)
    return finalize(run.layout)


def crop_stage_run(run: Run, client: Any, info: Logger = log.info) -> Location | None:
    """Map crop types over the season (skipping chunks already in the ledger) and publish the map;
    None when the run has no crop-type model."""
    from eowatch.pipelines import crops

    name = run.config.crop_model
    if not name:
        return None
    return _cube_model_stage_run(
        run, client, info, name, crops, crops.init_crops, crops.crop_batch, crops.finalize_crops,
        crops.CropInputs, "crop types",
    )  # fmt: skip


def landcover_stage_run(run: Run, client: Any, info: Logger = log.info) -> Location | None:
    """Map land cover over every period of the analysis cube (chunks with the model's halo, skipping
    those already in the ledger) and publish the map; None when the run has no land-cover model.

    Raises:
        ModelError: the model does not fit the cube (bands, resolution), before any inference.
    """
    from eowatch.pipelines import landcover as lc

    name = run.config.landcover_model
    if not name:
        return None
    if not run.store_complete(run.layout.out / f"{lc.STORE}.zarr"):
        lc.check_landcover_model(name, run.spec)
    return _cube_model_stage_run(
        run, client, info, name, lc, lc.init_landcover, lc.landcover_batch, lc.finalize_landcover,
        lc.LandCoverInputs, "land cover",
    )  # fmt: skip


def semantic_change_stage_run(run: Run, client: Any, info: Logger = log.info) -> Location | None:
    """Map change with its from/to land cover over consecutive periods (chunks with the model's halo,
    skipping those already in the ledger) and publish the map; None when the run has no such model.

    Raises:
        ModelError: the model does not fit the cube (bands, resolution), before any inference.
    """
    from eowatch.models.registry import card_of
    from eowatch.pipelines import semantic_change as sc

    name = run.config.semantic_change_model
    if not name:
        return None
    if not run.store_complete(run.layout.out / f"{sc.STORE}.zarr"):
        sc.check_semantic_change_model(name, run.spec)
    inputs = partial(sc.SemanticChangeInputs, threshold=card_of(name).decision_threshold)
    return _cube_model_stage_run(
        run, client, info, name, sc, sc.init_semantic_change, sc.semantic_change_batch,
        sc.finalize_semantic_change, inputs, "semantic change",
    )  # fmt: skip


def vhr_landcover_skipped(run: Run) -> str | None:
    """Why a run with a VHR land-cover model has no VHR date to classify (None when it has one)."""
    if vhr_layout(run) is None:
        return f"no {run.config.vhr_collection} acquisition over the grid"
    return None


def vhr_landcover_stage_run(
    run: Run, client: Any, info: Logger = log.info, warn: Logger = log.warning
) -> Location | None:
    """Map VHR land cover for every date of the VHR cube (one 1 m chunk per task, skipping chunks already
    in the ledger) and publish the map; None when the run has no VHR land-cover model, or (with a
    warning) no VHR acquisition over its grid.

    Raises:
        ModelError: the model does not fit the VHR cube (bands, pixel size), before any inference.
    """
    from eowatch.models.registry import card_of
    from eowatch.pipelines import vhr_landcover
    from eowatch.pipelines.zarr_store import open_group

    name = run.config.vhr_landcover_model
    if not name:
        return None
    out = run.layout.out / f"{vhr_landcover.STORE}.zarr"
    if run.store_complete(out):
        return out
    found = vhr_layout(run)
    if found is None:
        warn(f"VHR land cover ({name}) skipped: {vhr_landcover_skipped(run)}")
        return None
    _, grid, days = found
    vhr_bands = [k for k, arr in open_group(run.layout.vhr).arrays() if arr.ndim == 3]  # (time, y, x)
    vhr_landcover.check_vhr_landcover_cube(card_of(name), vhr_bands, grid.resolution)
    prov = {
        **run.provenance,
        "stac_items": {run.config.vhr_collection: item_ids(run).get(run.config.vhr_collection, [])},
    }
    store = vhr_landcover.init_vhr_landcover(run.layout, grid, days, name, prov)
    inputs = vhr_landcover.VhrLandCoverInputs(
        grid=grid.to_dict(),
        model=name,
        vhr_path=str(run.layout.vhr),
        store_path=str(store),
        ledger_path=str(run.layout.ledger(vhr_landcover.STORE).root),
    )
    done = run.layout.ledger(vhr_landcover.STORE).done()
    todo = [[(k.row, k.col)] for k in grid.chunks() if k not in done]  # 1024 px chunks: one per task
    info(f"VHR land cover: {name} over {len(days)} VHR dates, {len(todo)} chunks to do")
    progress = progress_logger(info, "vhr land cover")
    stats = map_batches(client, vhr_landcover.vhr_landcover_batch, todo, inputs, progress)
    record_phases(run, vhr_landcover.STORE, stats)
    return vhr_landcover.finalize_vhr_landcover(run.layout)


def _crop_summary(run: Run) -> dict[str, Any] | None:
    """Areas per crop class and, with planted truth, the map's scores; None without a crop model."""
    from eowatch.pipelines import crops

    if not run.config.crop_model:
        return None
    path = run.layout.out / f"{crops.STORE}.zarr"
    found = crops.crop_statistics(path, run.spec)
    if run.config.truth_dir:
        found["evaluation"] = crops.evaluate_crops(path, run.spec, run.config.truth_dir)
    return found


def _vhr_change_summary(run: Run) -> dict[str, Any] | None:
    """The VHR change part of the summary (``vhr_change.publish_vhr_change``, which also writes its
    quicklook); ``{"model", "skipped"}`` when the run had no VHR pair; None without a VHR change model."""
    from eowatch.pipelines import vhr_change

    name = run.config.vhr_change_model
    if not name:
        return None
    found = vhr_layout(run)
    if found is None or not (run.layout.out / f"{vhr_change.STORE}.zarr" / "zarr.json").exists():
        return {"model": name, "skipped": vhr_change_skipped(run) or "no VHR change map was written"}
    return vhr_change.publish_vhr_change(run.layout, found[1], run.config.truth_dir)


def _landcover_summary(run: Run) -> dict[str, Any] | None:
    """Area per land-cover class per period (km²) and, with planted truth, the maps' scores pooled over
    the periods (also writes its quicklook); None without a land-cover model."""
    from eowatch.pipelines import landcover

    if not run.config.landcover_model:
        return None
    path = run.layout.out / f"{landcover.STORE}.zarr"
    found = landcover.landcover_statistics(path, run.spec)
    if run.config.truth_dir:
        found["evaluation"] = landcover.evaluate_landcover(path, run.spec, run.config.truth_dir)
    quicklook = run.layout.out / landcover.QUICKLOOK
    landcover.render_landcover_quicklook(run.layout.cube, path, run.spec, quicklook)
    return found


def _vhr_landcover_summary(run: Run) -> dict[str, Any] | None:
    """Area per VHR land-cover class per date (ha) and, with truth, the scores against the archive's
    labels; ``{"model", "skipped"}`` when the run had no VHR date; None without a VHR land-cover model."""
    from eowatch.pipelines import vhr_landcover

    name = run.config.vhr_landcover_model
    if not name:
        return None
    found = vhr_layout(run)
    if found is None or not (run.layout.out / f"{vhr_landcover.STORE}.zarr" / "zarr.json").exists():
        return {"model": name, "skipped": vhr_landcover_skipped(run) or "no VHR land-cover map was written"}
    return vhr_landcover.publish_vhr_landcover(run.layout, found[1], run.config.truth_dir)


def _semantic_change_summary(run: Run) -> dict[str, Any] | None:
    """Changed area per transition and per (from -> to) pair and, with planted truth, SeK, mIoU and the
    binary and per-type scores (also writes its quicklook); None without a semantic change model."""
    from eowatch.pipelines import semantic_change

    if not run.config.semantic_change_model:
        return None
    path = run.layout.out / f"{semantic_change.STORE}.zarr"
    found = semantic_change.semantic_change_statistics(path, run.spec)
    if run.config.truth_dir:
        found["evaluation"] = semantic_change.evaluate_semantic_change(path, run.spec, run.config.truth_dir)
    quicklook = run.layout.out / semantic_change.QUICKLOOK
    semantic_change.render_semantic_change_quicklook(run.layout.cube, path, run.spec, quicklook)
    return found


def model_outputs(run: Run) -> dict[str, str]:
    """The ``output`` entries (name → URL) of the summary for the run's model stages, in the flow's order;
    empty without a model stage."""
    cfg, out = run.config, run.layout.out
    found: dict[str, str] = {}
    if cfg.crop_model:
        found["crop_type_map"] = (out / "crop_type.zarr").as_uri()
    if cfg.vhr_change_model:
        found.update(vhr_change_outputs(run.layout))
    if cfg.landcover_model:
        found["landcover_map"] = (out / "landcover.zarr").as_uri()
        found["landcover_quicklook"] = (out / "landcover_quicklook.png").as_uri()
    if cfg.vhr_landcover_model:
        found.update(vhr_landcover_outputs(run.layout))
    if cfg.semantic_change_model:
        found["semantic_change_map"] = (out / "semantic_change.zarr").as_uri()
        found["semantic_change_quicklook"] = (out / "semantic_change_quicklook.png").as_uri()
    return found


def model_summaries(run: Run) -> dict[str, dict[str, Any]]:
    """The summary's sections of the run's model stages (``crop_types``, ``vhr_change``, ``landcover``,
    ``vhr_landcover``, ``semantic_change``; those the run has), computed in that order; also writes the
    models' quicklooks."""
    sections = {
        "crop_types": _crop_summary(run),
        "vhr_change": _vhr_change_summary(run),
        "landcover": _landcover_summary(run),
        "vhr_landcover": _vhr_landcover_summary(run),
        "semantic_change": _semantic_change_summary(run),
    }
    return {key: found for key, found in sections.items() if found}
