"""The monitoring flow end to end with the archive's COGs AND the outputs on a real S3-protocol server.

COGs are read through GDAL ``/vsis3/`` against moto's endpoint on the Dask workers; the cube, change cube,
ledger, lease, quicklook, STAC catalog and summary are written through s3fs/Zarr ``FsspecStore``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import pytest

from tests.storage.conftest import CLUSTER, OUT_BUCKET, object_digests, run_params


def copy_cubes(src: str, dst: str) -> None:
    """Give a run the reference run's finished analysis and VHR cubes (same token, so the run takes them
    as its own and goes straight to inference): the tests below are about the change stage, and this
    saves two cube builds each."""
    from eowatch.infra.storage import location

    fs = location(src).fs
    for name in ("cube.zarr", "vhr.zarr"):
        fs.copy(f"{src}/{name}", f"{dst}/{name}", recursive=True)


pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_outputs_are_on_s3_and_complete(s3_run: dict[str, Any]) -> None:
    from eowatch.infra.storage import location
    from eowatch.pipelines.zarr_store import read_attrs

    out = location(s3_run["out"])
    summary = s3_run["summary"]
    assert summary["status"] == "complete"
    assert summary["output"]["change_cube"] == f"{s3_run['out']}/change.zarr"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for name in ("change.zarr", "cube.zarr", "vhr.zarr"):
        attrs = read_attrs(out / name)
        assert attrs["eowatch_status"] == "complete" and attrs["eowatch_run_token"] == summary["run_token"]
    assert (out / "quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "stac" / "catalog.json").exists()
    assert not (out / ".eowatch" / summary["run_token"]).exists()  # work prefix cleaned
    assert not (out / ".eowatch" / "lock").exists()  # lease released
    found = summary["changes_found"]
    assert found["changed_km2"] > 0 and summary["evaluation"]["model"]["per_pixel"]["f1"] > 0


def test_open_change_reads_the_cube_from_s3(s3_run: dict[str, Any]) -> None:
    from eowatch.open import open_change

    change = open_change(s3_run["out"])
    assert str(change.rio.crs) == "EPSG:32631"
    assert change.change_probability.dims == ("time", "y", "x") and change.sizes["time"] == 2
    p = change.change_probability.values
    assert np.isfinite(p).mean() > 0.9 and np.nanmin(p) >= 0 and np.nanmax(p) <= 1
    assert set(np.unique(change.change_mask.values)) <= {0, 1}


def test_rerun_is_a_noop_with_identical_objects(
    s3_run: dict[str, Any], s3_archive: Any, small_archive: Any
) -> None:
    from flows import monitor

    before = object_digests(s3_run["out"])
    summary = monitor(run_params(s3_archive, small_archive, s3_run["out"]), CLUSTER)
    assert summary["run_token"] == s3_run["summary"]["run_token"]
    assert object_digests(s3_run["out"]) == before


def test_resume_after_interrupted_inference_gives_identical_chunks(
    s3_run: dict[str, Any], s3_archive: Any, small_archive: Any
) -> None:
    """Stop a run after two of its four inference chunks, resume it: the change cube's objects equal the
    uninterrupted run's, byte for byte."""
    from eowatch.infra.cluster import cluster_client
    from eowatch.infra.storage import location
    from eowatch.pipelines import inference, stages
    from flows import monitor

    out = f"s3://{OUT_BUCKET}/runs/resumed"
    params = run_params(s3_archive, small_archive, out)
    run = stages.prepare_run(params.to_config())
    stages.search_stage(run)
    copy_cubes(s3_run["out"], out)
    with cluster_client(CLUSTER) as client:
        assert stages.cube_stage_run(run, client) == run.layout.cube  # complete: nothing rebuilt
    inputs = stages.prepare_change(run)
    inference.infer_batch([(0, 0), (1, 1)], inputs)  # then the "process dies"
    attrs = json.loads((location(out) / "change.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["eowatch_status"] == "in-progress"  # visible in place, but never as complete
    assert len(run.layout.ledger("change").done()) == 2

    summary = monitor(params, CLUSTER)
    assert summary["status"] == "complete"
    assert object_digests(f"{out}/change.zarr") == object_digests(f"{s3_run['out']}/change.zarr")


def _change_marked(fs: Any, out: str) -> bool:
    """Whether the run under ``out`` has recorded a change chunk in its ledger. The listing is fresh each
    time (s3fs caches listings), and a work prefix not there yet, or gone between two listings of one
    glob, counts as no chunk recorded (s3fs raised FileNotFoundError for it once)."""
    fs.invalidate_cache()
    try:
        return bool(fs.glob(f"{out}/.eowatch/*/ledger/change/*.json"))
    except FileNotFoundError:
        return False


def test_s3_restart_mid_write_ends_complete_or_resumable(
    s3_server: Any, s3_run: dict[str, Any], s3_archive: Any, small_archive: Any, monkeypatch: Any
) -> None:
    """Restart the S3 server (connections refused for 3 s) while the change stage writes its chunks.

    The run must either ride it out (retries with backoff) or fail cleanly with nothing marked complete;
    then a re-run finishes it. Either way the change cube equals the uninterrupted run's, byte for byte.
    """
    from eowatch.infra.storage import location
    from eowatch.pipelines.zarr_store import read_attrs
    from flows import monitor

    out = f"s3://{OUT_BUCKET}/runs/outage"
    params = run_params(s3_archive, small_archive, out)
    copy_cubes(s3_run["out"], out)
    # Hold the run between change chunks (the workers inherit these at start) so the restart hits it there.
    monkeypatch.setenv("EOWATCH_TEST_CHUNK_DELAY_S", "1.5")
    monkeypatch.setenv("EOWATCH_TEST_CHUNK_DELAY_STAGE", "change")
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = monitor(params, CLUSTER)
        except BaseException as exc:  # a clean failure is an accepted outcome, checked below
            result["error"] = exc

    thread = threading.Thread(target=run, name="outage-run")
    thread.start()
    fs = location(out).fs
    deadline = time.monotonic() + 240
    while not _change_marked(fs, out):
        assert thread.is_alive(), f"the run ended before its change stage: {result}"
        assert time.monotonic() < deadline, "no change-ledger marker in time"
        time.sleep(0.2)
    s3_server.restart(down_s=3.0)
    thread.join(timeout=300)
    assert not thread.is_alive()
    monkeypatch.delenv("EOWATCH_TEST_CHUNK_DELAY_S")
    monkeypatch.delenv("EOWATCH_TEST_CHUNK_DELAY_STAGE")
    outcome = f"failed cleanly: {result['error']}" if "error" in result else "rode it out"
    print(f"S3 restart mid-write: {outcome}")
    if "error" in result:  # a clean failure: nothing looks complete, and a re-run resumes
        assert read_attrs(location(out) / "change.zarr").get("eowatch_status") != "complete"
        assert not (location(out) / "summary.json").exists()
        result["summary"] = monitor(params, CLUSTER)
    assert result["summary"]["status"] == "complete"
    assert object_digests(f"{out}/change.zarr") == object_digests(f"{s3_run['out']}/change.zarr")


def test_credentials_never_appear_in_outputs_logs_or_artifacts(
    s3_run: dict[str, Any], prefect_server: Any
) -> None:
    """Grep every object the runs wrote (Zarr metadata and chunks, ledger, summary, quicklook, STAC), the
    run's log lines and the Prefect artifacts and logs for the access key and the secret."""
    import asyncio

    from prefect.client.orchestration import get_client

    from eowatch.infra.storage import StorageConfig
    from tests.storage.conftest import ACCESS_KEY, SECRET_KEY

    fs = StorageConfig.from_env().filesystem()
    keys = fs.find(OUT_BUCKET)
    assert any(k.endswith("summary.json") for k in keys) and any("/stac/" in k for k in keys)
    secrets = [s.encode() for s in (ACCESS_KEY, SECRET_KEY)]
    leaks = [k for k in keys if any(s in fs.cat_file(k) for s in secrets)]
    assert leaks == []

    async def prefect_text() -> str:
        async with get_client() as client:
            artifacts = await client.read_artifacts()
            logs = await client.read_logs()
            return "\n".join([*(str(a.data) for a in artifacts), *(lg.message for lg in logs)])

    text = "\n".join([*s3_run["log"], asyncio.run(prefect_text()), json.dumps(s3_run["summary"])])
    assert "monitor" in text or "Area processed" in text
    assert ACCESS_KEY not in text and SECRET_KEY not in text
