"""StorageConfig, ObjectPath, the run layout on object storage and the lease, against the moto server."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from eowatch.errors import InputError, StorageError
from eowatch.infra.storage import ObjectPath, StorageConfig, location, redact_secrets
from tests.storage.conftest import ACCESS_KEY, OUT_BUCKET, SECRET_KEY

pytestmark = pytest.mark.services


def test_config_from_env_holds_no_credentials() -> None:
    env = {
        "EOWATCH_S3_ENDPOINT": "http://127.0.0.1:9000/",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "EOWATCH_S3_MAX_ATTEMPTS": "7",
    }
    cfg = StorageConfig.from_env(env)
    assert cfg.endpoint_url == "http://127.0.0.1:9000" and cfg.region == "eu-west-1" and cfg.max_attempts == 7
    dumped = repr(cfg) + json.dumps(cfg.to_dict()) + json.dumps(cfg.storage_options()) + repr(cfg.gdal_env())
    assert ACCESS_KEY not in dumped and SECRET_KEY not in dumped
    assert StorageConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.storage_options()["config_kwargs"]["retries"] == {"mode": "adaptive", "max_attempts": 7}
    assert cfg.gdal_env() == {
        "AWS_S3_ENDPOINT": "127.0.0.1:9000",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_REGION": "eu-west-1",
    }
    https = StorageConfig.from_env({"AWS_ENDPOINT_URL_S3": "https://s3.example"})
    assert https.gdal_env()["AWS_HTTPS"] == "YES"
    assert StorageConfig.from_env({"AWS_NO_SIGN_REQUEST": "YES"}).gdal_env() == {"AWS_NO_SIGN_REQUEST": "YES"}


@pytest.mark.parametrize(
    "endpoint", ["ftp://host", "127.0.0.1:9000", f"http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:9000"]
)
def test_bad_endpoints_are_refused_without_echoing_secrets(endpoint: str) -> None:
    with pytest.raises(InputError) as info:
        StorageConfig(endpoint_url=endpoint)
    assert SECRET_KEY not in str(info.value)


def test_redact_secrets_removes_the_values_this_process_holds() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_ACCESS_KEY_ID": ACCESS_KEY}
    text = f"key {ACCESS_KEY} secret={SECRET_KEY} https://u:p@h/x?X-Amz-Signature=abc AWS_SESSION_TOKEN=tok"
    clean = redact_secrets(text, env)
    for secret in (ACCESS_KEY, SECRET_KEY, "u:p@", "abc", "=tok"):
        assert secret not in clean
    assert redact_secrets(clean, env) == clean


def test_locations() -> None:
    assert isinstance(location("s3://bucket/a/b/"), ObjectPath)
    p = location("s3://bucket/a/b/")
    assert str(p / "c.zarr") == "s3://bucket/a/b/c.zarr" and p.name == "b" and p.parent.name == "a"
    assert (p / "x.json").with_suffix(".png").name == "x.png"
    assert str(location("file:///tmp/x")) == "/tmp/x"
    for bad in ("s3://", "s3://k:s@bucket/x", "s3://bucket/a/../b"):
        with pytest.raises(InputError):
            ObjectPath(bad)


def test_object_path_roundtrip_and_output_checks(s3_server: Any) -> None:
    from eowatch.pipelines.grid import ChunkKey
    from eowatch.pipelines.ledger import RunLayout, check_output_location, write_atomic

    out = check_output_location(f"s3://{OUT_BUCKET}/unit/layout")
    assert isinstance(out, ObjectPath)
    layout = RunLayout(out, "tok")
    assert layout.in_place and layout.staging("change") == layout.change
    write_atomic(layout.items, "[]")
    assert layout.items.read_text() == "[]" and layout.work.exists()
    ledger = layout.ledger("cube")
    assert ledger.done() == set()
    ledger.mark_done(ChunkKey(0, 1), {"seconds": 1.0})
    ledger.mark_done(ChunkKey(2, 3), {"seconds": 1.0})
    assert ledger.done() == {ChunkKey(0, 1), ChunkKey(2, 3)} and ledger.is_done(ChunkKey(0, 1))
    layout.clean_work()
    assert not layout.work.exists()
    with pytest.raises(StorageError, match="does not exist"):
        check_output_location("s3://no-such-bucket-eowatch/out")
    with pytest.raises(StorageError, match="needs a prefix"):
        check_output_location(f"s3://{OUT_BUCKET}")


def test_a_store_of_another_run_is_never_written_into(s3_server: Any) -> None:
    import numpy as np

    from eowatch.pipelines.grid import GridSpec
    from eowatch.pipelines.ledger import RunLayout
    from eowatch.pipelines.zarr_store import create_template

    out = location(f"s3://{OUT_BUCKET}/unit/owned")
    grid = GridSpec("EPSG:32631", 10.0, (600000.0, 5700000.0, 600640.0, 5700640.0), chunk=32)
    variables = {"v": (np.dtype("float32"), np.nan, {})}
    times = np.array(["2026-04-01"], dtype="datetime64[ns]")
    create_template(out / "change.zarr", grid, times, variables, {"eowatch_run_token": "first"})
    assert RunLayout(out, "first").staging("change") == out / "change.zarr"
    with pytest.raises(StorageError, match="different run"):
        RunLayout(out, "second").staging("change")


def test_lease_excludes_a_second_run_and_is_released(s3_server: Any) -> None:
    from eowatch.pipelines.run_lock import ObjectLease, run_lock

    out = location(f"s3://{OUT_BUCKET}/unit/lease")
    held = pytest.raises(StorageError, match=r"another eowatch run .* is writing to")
    with run_lock(out), held, run_lock(out):
        pass
    assert not (out / ".eowatch" / "lock").exists()
    with run_lock(out):  # free again
        pass
    # A holder that died leaves its lease behind; once expired the next run takes it over.
    stale = ObjectLease(out / ".eowatch" / "lock", ttl_s=3)
    stale.acquire()
    with pytest.raises(StorageError, match="lease runs until"):
        ObjectLease(out / ".eowatch" / "lock").acquire()
    time.sleep(3.2)
    with ObjectLease(out / ".eowatch" / "lock") as taker:
        held = json.loads((out / ".eowatch" / "lock").read_text())
        assert held["owner"] == taker.owner


def test_a_holder_that_lost_its_lease_says_so(s3_server: Any) -> None:
    from eowatch.pipelines.run_lock import ObjectLease

    path = location(f"s3://{OUT_BUCKET}/unit/lost/.eowatch/lock")
    with pytest.raises(StorageError, match="lost its lease"), ObjectLease(path, ttl_s=3) as lease:
        path.write_text(json.dumps({"owner": "someone-else", "expires": time.time() + 60}))
        # The next renewal (every 1 s) finds another ETag. Wait for it rather than for a fixed time:
        # on a loaded machine the renewal thread can run late.
        deadline = time.monotonic() + 30
        while not lease._lost and time.monotonic() < deadline:
            time.sleep(0.1)
    assert json.loads(path.read_text())["owner"] == "someone-else"  # not deleted: not ours


def test_errors_and_debug_logs_hold_no_credentials(s3_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Debug logging of botocore/s3fs/rasterio on, then S3 writes, a /vsis3/ read and failing requests."""
    from eowatch.errors import EowatchError
    from eowatch.pipelines.ledger import check_output_location
    from eowatch.pipelines.reader import StacRegionReader

    messages = []
    with caplog.at_level(logging.DEBUG):
        p = location(f"s3://{OUT_BUCKET}/unit/logs/x.json")
        p.write_text("{}")
        assert p.read_text() == "{}"
        try:
            check_output_location("s3://no-such-bucket-eowatch/out")
        except EowatchError as exc:
            messages.append(str(exc))
        geobox = _geobox()
        lon0, lat0, lon1, lat1 = geobox.extent.to_crs("EPSG:4326").boundingbox
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": "missing",
            "collection": "c",
            "bbox": [lon0, lat0, lon1, lat1],
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]],
            },
            "properties": {"datetime": "2026-04-01T10:30:00Z"},
            "assets": {"red": {"href": f"s3://{OUT_BUCKET}/unit/missing.tif", "type": "image/tiff"}},
            "links": [],
        }
        with pytest.raises(EowatchError) as info:
            StacRegionReader(attempts=1).load([item], ["red"], geobox, "uint16", {"*": "nearest"}, 0)
        messages.append(str(info.value))
    text = caplog.text + "\n".join(messages)
    assert "botocore" in caplog.text or "s3fs" in caplog.text  # debug logging really was on
    assert ACCESS_KEY not in text and SECRET_KEY not in text


def _geobox() -> Any:
    from odc.geo.geobox import GeoBox

    return GeoBox.from_bbox((600000, 5700000, 600640, 5700640), "EPSG:32631", resolution=10)
