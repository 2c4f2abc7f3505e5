"""The embedded default: synthetic archive → real local services → the monitoring flow, end to end.

``eowatch demo`` generates (or reuses) the archive under ``<workdir>/archive``, serves its COGs over
HTTP with Range requests and its items through a real STAC API (``rustac serve``), starts a temporary
Prefect server, runs the ``monitor`` flow against all of them on a local Dask cluster, and writes the
outputs to ``<workdir>/output``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("eowatch")


@dataclass(frozen=True)
class ServedArchive:
    """URLs of an archive served on loopback."""

    stac_url: str
    asset_url: str
    manifest: dict[str, Any]


@contextmanager
def served_archive(archive_dir: Path, asset_url: str | None = None) -> Iterator[ServedArchive]:
    """Serve an archive: its assets over HTTP (Range requests) and its items through a STAC API.

    With ``asset_url`` (where the archive folder was uploaded, e.g. ``s3://bucket/archive`` by
    :func:`eowatch.infra.s3_server.upload_archive`) the items' hrefs point there and no asset server runs.
    """
    from eowatch.archive import load_collections, load_items, load_manifest
    from eowatch.infra.services import AssetServer, StacApiServer

    manifest = load_manifest(archive_dir)
    with ExitStack() as stack:
        if asset_url is None:
            asset_url = stack.enter_context(AssetServer(archive_dir)).url
        items = load_items(archive_dir, asset_url)
        stac = stack.enter_context(StacApiServer(items, load_collections(archive_dir)))
        yield ServedArchive(stac.url, asset_url, manifest)


def ensure_archive(
    archive_dir: Path, seed: int, start: dt.date | None = None, end: dt.date | None = None
) -> Path:
    """Generate the default archive for ``seed`` (over ``start``..``end`` when given, else the default
    March–August) unless it is already there (generation is a no-op then)."""
    from tqdm import tqdm

    from eowatch.archive import ArchiveConfig, make_archive

    bar = tqdm(total=100, desc="archive", unit="%", leave=False)

    def progress(stage: str, fraction: float) -> None:
        bar.set_postfix_str(stage)
        bar.n = round(100 * fraction)
        bar.refresh()

    t0 = time.perf_counter()
    period = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    make_archive(archive_dir, ArchiveConfig(seed=seed, **period), progress=progress)
    bar.close()
    log.info(f"archive ready in {archive_dir} ({time.perf_counter() - t0:.1f} s)")
    return archive_dir


def archive_run_params(
    served: ServedArchive, out: Path, archive_dir: Path | None = None, **overrides: Any
) -> Any:
    """Monitoring parameters covering a served archive's whole AOI and date range.

    With ``archive_dir`` the run is scored on the archive's planted truth. Asset hrefs must lie under the
    archive's asset server (``asset_stores``), so an item pointing anywhere else is refused before any
    read. ``overrides`` replace any ``MonitorParams`` field (e.g. ``start``, ``s1_collection=None``).
    """
    from eowatch.pipelines.params import parse_params

    m = served.manifest
    params: dict[str, Any] = {
        "stac_url": served.stac_url,
        "bbox": tuple(m["aoi_bbox_lonlat"]),
        "crs": m["crs"],
        "bounds": tuple(m["aoi_bbox"]),
        "start": dt.date.fromisoformat(m["start"]),
        "end": dt.date.fromisoformat(m["end"]),
        "out": str(out),
        "truth_dir": str(archive_dir / "truth") if archive_dir else None,
        "vhr_collection": "vhr-rgbn",
        "asset_stores": (served.asset_url,),
    }
    return parse_params(**{**params, **overrides})


def run_demo(workdir: Path, seed: int, workers: int = 2) -> dict[str, Any]:
    """Run the whole demo; return the run summary."""
    from eowatch.infra.cluster import ClusterConfig
    from eowatch.infra.services import PrefectServer, prefect_env

    workdir = workdir.resolve()
    archive = ensure_archive(workdir / "archive", seed)
    with ExitStack() as stack:
        served = stack.enter_context(served_archive(archive))
        prefect = stack.enter_context(PrefectServer())
        stack.enter_context(prefect_env(prefect.api_url))
        params = archive_run_params(
            served,
            workdir / "output",
            archive,
            crop_model="crop-type-ltae",
            vhr_change_model="siamese-vhr-change",
            landcover_model="landcover-s2-unet",
            vhr_landcover_model="landcover-vhr-unet",
            semantic_change_model="siamese-s2s1-semantic",
        )
        _replace_stale_output(params, workdir / "output")
        from flows import monitor

        return monitor(params, ClusterConfig(n_workers=workers))


def _replace_stale_output(params: Any, out: Path) -> None:
    """Remove the demo's own output folder when it holds a run of other settings (an earlier version's
    models or parameters): the demo's output is disposable, a user's run folder is not (``eowatch run``
    refuses it instead)."""
    import shutil

    from eowatch.errors import StorageError
    from eowatch.pipelines.stages import prepare_run

    try:
        prepare_run(params.to_config())
    except StorageError as exc:
        if "holds the output of a different run" not in str(exc):
            raise
        log.warning(f"{out} holds an earlier demo run (other models or settings); replacing it")
        shutil.rmtree(out)


def serve_archive(archive_dir: Path) -> None:
    """Serve an archive until interrupted (for notebooks and manual exploration)."""
    with served_archive(archive_dir) as served:
        print(f"STAC API: {served.stac_url}\nassets:   {served.asset_url}\nCtrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
