"""S3 faults: the monitoring run's outputs go to an S3 server (moto) through the fault-injecting proxy.

The proxy answers a deterministic share of requests, PUTs included, as S3 does when it is overloaded or
failing: ``503 SlowDown``, ``500 InternalError``, 429, stalls past the client's read timeout, connections
dropped before or after the request reached the server, answers cut off. A run through those faults must
complete with every Zarr chunk and metadata document identical to a clean reference run's (a local run of
the same computation: the run token does not depend on where outputs go, and the ``parameters``
attribute, which records the output URL, is left out as everywhere in this suite). With S3 refusing every
write, a run must fail with one StorageError line naming the store, leave nothing marked complete, and a
later run must resume and complete. The proxy keeps SigV4 signatures valid (checked with moto's signature
verification on), and forwards chunked request bodies.

Every run here uses the small archive over HTTP (COGs are not read from S3: the faults are on the output
store), its top row of two 128 px chunks, no VHR, a thread-only Dask cluster. A run on S3 makes about 250
requests per chunk (Zarr reads the group metadata for every region write): on moto a clean four-chunk run
took 32 s here against 7 s on a local disk, so two chunks keep the module within its time budget.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eowatch.errors import StorageError
from tests.reliability.conftest import CHUNK, THREADS, run_params, store_fingerprint
from tests.reliability.fault_proxy import FaultPlan, FaultProxy

pytestmark = [pytest.mark.services, pytest.mark.slow]

BUCKET = "eowatch-faults"
ACCESS_KEY = "AKIAEOWATCHFAULTKEY7"
SECRET_KEY = "eowatchFaultSecret/+/9d1c0b7e"
STORES = ("cube.zarr", "change.zarr")


class S3Proxy:
    """The moto server and the S3 fault proxy in front of it (this module's runs reach S3 only through
    it: ``EOWATCH_S3_ENDPOINT`` is the proxy's URL)."""

    def __init__(self, server: Any, proxy: FaultProxy) -> None:
        self.server, self.proxy = server, proxy

    def direct(self) -> Any:
        """A filesystem on the server itself, past the proxy (for the test's own checks)."""
        from eowatch.infra.storage import StorageConfig

        return StorageConfig(endpoint_url=self.server.url, region="us-east-1", max_attempts=3).filesystem()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Proxy]:
    """moto behind an ``s3``-dialect fault proxy (fault-free until a test sets a plan), with this process's
    environment pointing eowatch at the proxy: short timeouts, so a stall past 1 s counts as one."""
    from eowatch.infra.s3_server import S3Server
    from eowatch.infra.storage import register_fsspec_defaults

    with (
        S3Server() as server,
        FaultProxy(server.url, dialect="s3") as proxy,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in {
            "EOWATCH_S3_ENDPOINT": proxy.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
            "EOWATCH_S3_MAX_ATTEMPTS": "6",
            "EOWATCH_S3_CONNECT_TIMEOUT_S": "2",
            "EOWATCH_S3_READ_TIMEOUT_S": "1",
        }.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "EOWATCH_S3_CREDENTIALS_BLOCK"):
            mp.delenv(key, raising=False)
        server.create_bucket(BUCKET)
        try:
            yield S3Proxy(server, proxy)
        finally:
            mp.undo()
            register_fsspec_defaults()  # the process's own endpoint again for s3:// URLs opened by name


def top_row(served: Any) -> tuple[float, float, float, float]:
    """Grid bounds (EPSG:32631, m) of the top row of the small archive's 128 px chunks: two chunks."""
    minx, _, maxx, maxy = served.manifest["aoi_bbox"]
    return (minx, maxy - CHUNK * 10.0, maxx, maxy)


def s3_params(served: Any, out: str) -> Any:
    """The reliability suite's run parameters over :func:`top_row`, with outputs at ``out``."""
    from eowatch.pipelines.params import MonitorParams

    base = run_params(served, Path("unused"), bounds=top_row(served)).model_dump()
    return MonitorParams(**{**base, "out": out})


@pytest.fixture(scope="module")
def reference(
    served_small_archive: Any, prefect_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Output folder of a clean, local run of the same computation: what every S3 run must equal."""
    from flows import monitor

    out = tmp_path_factory.mktemp("s3-reference") / "out"
    summary = monitor(run_params(served_small_archive, out, bounds=top_row(served_small_archive)), THREADS)
    assert summary["status"] == "complete"
    return out


@pytest.fixture
def proxy(s3: S3Proxy) -> Iterator[FaultProxy]:
    """The S3 proxy, fault-free again (and its counts reset) after the test."""
    s3.proxy.set_plan(FaultPlan())
    yield s3.proxy
    s3.proxy.set_plan(FaultPlan())


def object_fingerprint(fs: Any, url: str) -> dict[str, Any]:
    """:func:`store_fingerprint` of a store on S3: SHA-256 of every chunk object by key relative to the
    store, every ``zarr.json`` parsed, without the ``parameters`` attribute (it records the output URL)."""
    base = url.removeprefix("s3://").rstrip("/")
    out: dict[str, Any] = {}
    for key in sorted(fs.find(base)):
        rel, data = key[len(base) + 1 :], fs.cat_file(key)
        if rel.rsplit("/", 1)[-1] == "zarr.json":
            doc = json.loads(data)
            doc.get("attributes", {}).pop("parameters", None)
            for meta in (doc.get("consolidated_metadata") or {}).get("metadata", {}).values():
                meta.get("attributes", {}).pop("parameters", None)
            out[rel] = doc
        else:
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def assert_same_as_reference(fs: Any, out: str, reference: Path) -> None:
    """The S3 run's analysis and change cubes equal the local reference run's, object for file."""
    for name in STORES:
        got, want = object_fingerprint(fs, f"{out}/{name}"), store_fingerprint(reference / name)
        assert sorted(got) == sorted(want), f"{name}: other objects than the reference's files"
        differing = [k for k in want if got[k] != want[k]]
        assert not differing, (
            f"{name}: {len(differing)} objects differ from the reference, e.g. {differing[:3]}"
        )


def test_throttling_5xx_and_stalls_on_s3_give_identical_objects(
    proxy: FaultProxy, s3: S3Proxy, served_small_archive: Any, reference: Path, record_property: Any
) -> None:
    """6 % of S3 requests (PUT, GET, HEAD, DELETE, POST) fail once: SlowDown, InternalError, 429, a 2 s
    stall (read timeout 1 s), a connection dropped before or after the request landed, a cut answer."""
    from flows import monitor

    proxy.set_plan(
        FaultPlan(
            seed=21,
            share=0.06,
            faults=("503", "500", "429", "stall", "drop", "drop_after", "truncate"),
            stall_s=2.0,
            max_faults_per_request=1,
        )
    )
    out = f"s3://{BUCKET}/faulted"
    summary = monitor(s3_params(served_small_archive, out), THREADS)
    faults = proxy.faults_by_method()
    record_property(
        "s3_outcomes", json.dumps({f"{m} {o}": n for (m, o), n in proxy.outcomes_by_method().items()})
    )
    assert summary["status"] == "complete"
    assert faults["PUT"] >= 3 and faults["GET"] + faults["HEAD"] >= 6, faults  # writes and reads faulted
    kinds = {outcome for _, _, outcome in proxy.history()}
    assert {"503", "500", "stall"} <= kinds, kinds
    fs = s3.direct()
    assert_same_as_reference(fs, out, reference)
    assert not fs.exists(f"{BUCKET}/faulted/.eowatch/{summary['run_token']}")  # work prefix cleaned
    assert not fs.exists(f"{BUCKET}/faulted/.eowatch/lock")  # lease released


def test_s3_down_for_writes_fails_cleanly_and_a_rerun_resumes(
    proxy: FaultProxy,
    s3: S3Proxy,
    served_small_archive: Any,
    reference: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the change stage has recorded a chunk, S3 answers 503 SlowDown to every PUT: the run fails
    with a StorageError naming the store (no credential in it), nothing is marked complete; with S3 back,
    a re-run skips the recorded chunk and completes, identical to the reference.

    The run is given the reference's finished analysis cube (same token: it takes it as its own and goes
    straight to the change stage), as tests/storage does, so the outage hits the change stage's writes.
    """
    from eowatch.pipelines.zarr_store import read_attrs
    from flows import monitor

    monkeypatch.setenv("EOWATCH_S3_MAX_ATTEMPTS", "2")  # and s3fs tries each SlowDown write 5 times
    # Adaptive mode would throttle this client to 0.5 requests/s after the first SlowDown (the failure
    # then takes ~25 s instead of ~5 s); the outcome is the same, so this test saves the wait.
    monkeypatch.setenv("EOWATCH_S3_RETRY_MODE", "standard")
    monkeypatch.setenv("EOWATCH_TEST_CHUNK_DELAY_S", "1")
    monkeypatch.setenv("EOWATCH_TEST_CHUNK_DELAY_STAGE", "change")
    out = f"s3://{BUCKET}/outage"
    params = s3_params(served_small_archive, out)
    fs = s3.direct()
    fs.put(str(reference / "cube.zarr"), f"{BUCKET}/outage/cube.zarr", recursive=True)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = monitor(params, THREADS)
        except BaseException as exc:  # the expected outcome, checked below
            result["error"] = exc

    thread = threading.Thread(target=run, name="s3-outage-run")
    thread.start()
    deadline = time.monotonic() + 120
    while not (recorded := _glob_or_empty(fs, f"{BUCKET}/outage/.eowatch/*/ledger/change/*.json")):
        assert thread.is_alive(), f"the run ended before its change stage: {result}"
        assert time.monotonic() < deadline, "no change-ledger marker in time"
        time.sleep(0.1)
    proxy.set_plan(FaultPlan(share=1.0, faults=("503",), methods=("PUT",), max_faults_per_request=None))
    thread.join(timeout=180)
    assert not thread.is_alive()
    error = result.get("error")
    assert isinstance(error, StorageError), result
    message = str(error)
    assert f"s3://{BUCKET}/outage/change.zarr" in message and "reduce your request rate" in message, message
    assert ACCESS_KEY not in message and SECRET_KEY not in message
    assert proxy.outcomes["503"] >= 5
    assert read_attrs(f"{out}/change.zarr").get("eowatch_status") != "complete"
    assert not fs.exists(f"{BUCKET}/outage/summary.json")
    assert not fs.exists(f"{BUCKET}/outage/stac/catalog.json")

    done = {Path(k).stem for k in fs.glob(f"{BUCKET}/outage/.eowatch/*/ledger/change/*.json")}
    assert done and len(done) >= len(recorded)
    proxy.set_plan(FaultPlan())  # S3 is back
    monkeypatch.delenv("EOWATCH_TEST_CHUNK_DELAY_S")
    summary = monitor(params, THREADS)
    assert summary["status"] == "complete"
    rewritten = {
        key.split(" ")[1]
        for _, key, _ in proxy.history("/change.zarr/")
        if key.startswith("PUT ") and "/c/" in key
    }
    for chunk in done:  # recorded chunks were not written again
        r, c = (int(v) for v in chunk.split("_"))
        assert not [p for p in rewritten if p.endswith(f"/c/0/{r}/{c}")], (chunk, sorted(rewritten))
    assert_same_as_reference(fs, out, reference)


def test_signed_requests_pass_the_proxy_intact(proxy: FaultProxy, s3: S3Proxy) -> None:
    """With moto's SigV4 verification on, PUT (conditional too), GET, HEAD, POST (batch delete) and
    DELETE through the ``s3`` proxy are accepted; through a proxy that rewrites ``Host`` they are not."""
    import s3fs
    from botocore.exceptions import ClientError

    key, secret = s3.server.iam_credentials("eowatch-signer")
    opts = {"key": key, "secret": secret, "client_kwargs": {"region_name": "us-east-1"}}
    with s3.server.verify_signatures():
        fs = s3fs.S3FileSystem(endpoint_url=proxy.url, skip_instance_cache=True, **opts)
        fs.pipe_file(f"{BUCKET}/signed/a.bin", b"x" * 70_000)
        assert fs.cat_file(f"{BUCKET}/signed/a.bin") == b"x" * 70_000 and fs.info(f"{BUCKET}/signed/a.bin")
        client = _client(proxy.url, key, secret)
        etag = client.put_object(Bucket=BUCKET, Key="signed/lock", Body=b"1", IfNoneMatch="*")["ETag"]
        etag = client.put_object(Bucket=BUCKET, Key="signed/lock", Body=b"2", IfMatch=etag)["ETag"]
        client.delete_object(Bucket=BUCKET, Key="signed/lock", IfMatch=etag)
        fs.rm(f"{BUCKET}/signed", recursive=True)  # POST ?delete
        assert not fs.exists(f"{BUCKET}/signed/a.bin")
        rewrites_host = FaultProxy(s3.server.url, dialect="http")  # Host becomes the upstream's
        with rewrites_host as rewriting, pytest.raises(ClientError, match="SignatureDoesNotMatch"):
            _client(rewriting.url, key, secret).put_object(Bucket=BUCKET, Key="signed/x", Body=b"1")
    methods = {m for (m, _) in proxy.outcomes_by_method()}
    assert {"PUT", "GET", "HEAD", "POST", "DELETE"} <= methods, methods


def test_chunked_request_bodies_are_forwarded(proxy: FaultProxy, s3: S3Proxy) -> None:
    """A PUT whose body comes with ``Transfer-Encoding: chunked`` reaches the server whole."""
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = [b"a" * 1000, b"b" * 10, b"c" * 70_000]
    conn.request("PUT", f"/{BUCKET}/chunked/obj", body=iter(body), encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert s3.direct().cat_file(f"{BUCKET}/chunked/obj") == b"".join(body)
    assert proxy.outcomes_by_method()[("PUT", "forwarded")] == 1


def _client(endpoint: str, key: str, secret: str) -> Any:
    import botocore.config
    import botocore.session

    return botocore.session.Session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def _glob_or_empty(fs: Any, pattern: str) -> list[str]:
    """``fs.glob`` that is empty while the run has not created the pattern's prefix yet (s3fs raises
    FileNotFoundError for a glob under a prefix that does not exist)."""
    try:
        return fs.glob(pattern)
    except FileNotFoundError:
        return []
