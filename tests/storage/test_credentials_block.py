"""S3 credentials from a Prefect block (prefect-aws ``AwsCredentials``), named by configuration.

Only the block's name travels (``EOWATCH_S3_CREDENTIALS_BLOCK``, ``StorageConfig.credentials_block``);
each process that makes S3 requests loads the secret from its own Prefect API, once. The service tests
save a block on the test Prefect server, remove every AWS credential from the environment and turn on
moto's signature verification for an IAM user whose key only the block holds, so a request succeeds
only if its process signed it with the block's key:

- the monitoring flow on S3 (the change stage on two Dask worker processes reading the analysis cube and
  writing the change cube through s3fs/Zarr; the lease, ledger, STAC catalog and summary from the flow
  process through botocore/s3fs) completes, its change cube identical to the reference run's; the key
  and the secret are then looked for in every output object, the run's log lines, the Prefect logs,
  artifacts and flow-run parameters: nowhere;
- a GDAL ``/vsis3/`` read of an archive COG in a fresh process, with the block's credentials as a
  rasterio ``AWSSession`` (rasterio refuses them as GDAL options), as a Dask worker does it.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eowatch.errors import InputError, StorageError
from eowatch.infra.s3_credentials import S3Credentials, check_block_name, forget_block_credentials
from eowatch.infra.s3_filesystem import Retry429
from eowatch.infra.storage import StorageConfig, redact_secrets
from tests.storage.conftest import ARCHIVE_URL, CLUSTER, OUT_BUCKET, run_params

BLOCK = "eowatch-test-s3"


# --- configuration, without services ------------------------------------------------------------------


def test_the_block_name_is_configuration_and_the_only_thing_that_travels() -> None:
    cfg = StorageConfig.from_env({"EOWATCH_S3_CREDENTIALS_BLOCK": BLOCK, "AWS_PROFILE": "ignored"})
    assert cfg.credentials_block == BLOCK and cfg.profile is None
    assert cfg.storage_options()["credentials_block"] == BLOCK
    assert StorageConfig.from_dict(cfg.to_dict()) == cfg
    assert "key" not in cfg.storage_options() and "secret" not in cfg.storage_options()
    assert check_block_name("aws-credentials/prod-s3") == "aws-credentials/prod-s3"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"credentials_block": "has space"}, "is not a Prefect block name"),
        ({"credentials_block": ""}, "is not a Prefect block name"),
        ({"credentials_block": BLOCK, "anonymous": True}, "cannot be combined with anonymous access"),
        ({"credentials_block": BLOCK, "profile": "p"}, "cannot be combined with an AWS profile"),
        ({"retry_mode": "legacy"}, "retry mode must be one of standard, adaptive"),
    ],
)
def test_conflicting_or_malformed_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        StorageConfig(**fields)


def test_timeouts_and_retry_mode_come_from_the_environment() -> None:
    env = {
        "EOWATCH_S3_CONNECT_TIMEOUT_S": "2",
        "EOWATCH_S3_READ_TIMEOUT_S": "1.5",
        "EOWATCH_S3_RETRY_MODE": "standard",
    }
    assert StorageConfig.from_env(env).botocore_config() == {
        "retries": {"mode": "standard", "max_attempts": 10},
        "connect_timeout": 2.0,
        "read_timeout": 1.5,
    }
    with pytest.raises(InputError, match="EOWATCH_S3_READ_TIMEOUT_S must be a number of seconds"):
        StorageConfig.from_env({"EOWATCH_S3_READ_TIMEOUT_S": "soon"})


def test_resolved_credentials_never_show_their_values() -> None:
    creds = S3Credentials("AKIAVISIBLE0000KEY", "very/secret+value")
    assert "AKIAVISIBLE" not in repr(creds) and "very/secret" not in repr(creds)
    assert creds.botocore_kwargs() == {
        "aws_access_key_id": "AKIAVISIBLE0000KEY",
        "aws_secret_access_key": "very/secret+value",
    }
    assert StorageConfig().aws_session_options() is None  # no block: GDAL finds credentials itself


def test_a_block_needs_a_prefect_api() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    forget_block_credentials()
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(StorageError) as info:
        StorageConfig(credentials_block="nowhere").credentials()
    assert "PREFECT_API_URL is not set in this process" in str(info.value)


def _answer(status: int, retry_after: str | None = None) -> tuple[Any, dict[str, Any]]:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return SimpleNamespace(status_code=status, headers=headers), {}


def test_http_429_is_retried_with_backoff_within_the_attempts() -> None:
    """botocore retries 429 only by error code; a HEAD has none (no body), so the hook decides by status."""
    retry = Retry429(max_attempts=3)
    assert retry(response=_answer(503), attempts=1) is None  # botocore's own handler decides
    assert 0 <= retry(response=_answer(429), attempts=1) <= 2  # type: ignore[operator]
    assert retry(response=_answer(429, "4"), attempts=2) == 4.0
    assert retry(response=_answer(429, "600"), attempts=2) == 20.0
    assert retry(response=_answer(429), attempts=3) is None  # attempts used up
    assert retry(response=None, attempts=1) is None  # a connection error: botocore's handler


# --- the block on a real Prefect server, the run on moto ---------------------------------------------


@pytest.fixture
def block_only(s3_server: Any, s3_archive: Any, prefect_server: Any) -> Iterator[tuple[str, str]]:
    """An ``AwsCredentials`` block on the Prefect server holding the key of an IAM user of the S3 server;
    no credential in the environment; the S3 server verifying signatures. Yields (key, secret)."""
    from prefect_aws import AwsCredentials

    from eowatch.infra.storage import register_fsspec_defaults

    key, secret = s3_server.iam_credentials("eowatch-block-user")
    AwsCredentials(aws_access_key_id=key, aws_secret_access_key=secret).save(BLOCK, overwrite=True)
    forget_block_credentials()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            mp.delenv(name, raising=False)
        mp.setenv("EOWATCH_S3_CREDENTIALS_BLOCK", BLOCK)
        mp.setenv("PREFECT_API_URL", prefect_server.api_url)  # Dask worker processes inherit it
        try:
            with s3_server.verify_signatures():
                yield key, secret
        finally:
            mp.undo()
            register_fsspec_defaults()  # s3:// opened by URL alone: the environment's credentials again
            forget_block_credentials()


@pytest.mark.services
@pytest.mark.slow
def test_the_monitoring_run_uses_only_the_block(
    block_only: tuple[str, str], s3_run: dict[str, Any], s3_archive: Any, small_archive: Path
) -> None:
    """The run is given the reference run's analysis and VHR cubes (as tests/storage/test_monitor_s3.py
    does), so its cluster work is the change stage: S3 reads and writes on the worker processes. GDAL
    ``/vsis3/`` reads with the block are the next test (the reader needs a change to pass a session)."""
    import asyncio

    import botocore.exceptions
    from prefect.client.orchestration import get_client

    from eowatch.infra.storage import location
    from eowatch.pipelines.zarr_store import read_attrs
    from flows import monitor
    from tests.storage.conftest import object_digests
    from tests.storage.test_monitor_s3 import copy_cubes

    key, secret = block_only
    without_block = StorageConfig.from_env(
        {"EOWATCH_S3_ENDPOINT": StorageConfig.from_env().endpoint_url or ""}
    )
    with pytest.raises(botocore.exceptions.NoCredentialsError):  # the environment really has none
        without_block.client().head_bucket(Bucket=OUT_BUCKET)

    out = f"s3://{OUT_BUCKET}/runs/block"
    copy_cubes(s3_run["out"], out)
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        summary = monitor(run_params(s3_archive, small_archive, out), CLUSTER)
    finally:
        logging.getLogger().removeHandler(handler)
    assert summary["status"] == "complete"
    assert read_attrs(f"{out}/change.zarr")["eowatch_status"] == "complete"
    assert object_digests(f"{out}/change.zarr") == object_digests(f"{s3_run['out']}/change.zarr")

    fs = location(out).fs
    assert pickle.loads(pickle.dumps(fs)).storage_options["credentials_block"] == BLOCK
    assert secret.encode() not in pickle.dumps(fs) and key.encode() not in pickle.dumps(fs)
    objects = fs.find(out)
    assert any(k.endswith("summary.json") for k in objects) and any("/stac/" in k for k in objects)
    leaks = [k for k in objects if key.encode() in fs.cat_file(k) or secret.encode() in fs.cat_file(k)]
    assert leaks == []

    async def prefect_text() -> str:
        async with get_client() as client:
            artifacts = await client.read_artifacts()
            logs = await client.read_logs()
            runs = await client.read_flow_runs()
            return "\n".join(
                [
                    *(str(a.data) for a in artifacts),
                    *(lg.message for lg in logs),
                    *(json.dumps(r.parameters, default=str) for r in runs),
                ]
            )

    text = "\n".join([*records, asyncio.run(prefect_text()), json.dumps(summary)])
    assert "Area processed" in text or "monitor" in text
    assert key not in text and secret not in text
    assert redact_secrets(f"key {key} secret {secret}") == "key *** secret ***"  # loaded: redacted


@pytest.mark.services
def test_a_missing_block_is_one_clear_error(block_only: tuple[str, str]) -> None:
    with pytest.raises(StorageError) as info:
        StorageConfig(credentials_block="no-such-block").client()
    message = str(info.value)
    assert "no AWS Credentials block named 'no-such-block' on the Prefect server at http://" in message
    assert block_only[1] not in message


@pytest.mark.services
def test_a_vsis3_read_on_a_fresh_process_resolves_the_block_itself(block_only: tuple[str, str]) -> None:
    """A GDAL ``/vsis3/`` read in a new process (as on a Dask worker) with nothing but the block's name."""
    import subprocess
    import sys

    code = (
        "import rasterio\n"
        "from rasterio.session import AWSSession\n"
        "from eowatch.infra.storage import StorageConfig\n"
        "cfg = StorageConfig.from_env()\n"
        "with rasterio.Env(session=AWSSession(**cfg.aws_session_options()), **cfg.gdal_env()):\n"
        f"    with rasterio.open('{ARCHIVE_URL}/assets/' + {_first_cog()!r}) as src:\n"
        "        print(src.width, src.read(1, window=((0, 8), (0, 8))).sum() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "True"
    assert block_only[0] not in done.stdout + done.stderr and block_only[1] not in done.stdout + done.stderr


def _first_cog() -> str:
    """Key (under ``assets/``) of one COG of the uploaded archive."""
    fs = StorageConfig.from_env().filesystem()
    base = ARCHIVE_URL.removeprefix("s3://") + "/assets/"
    return next(k for k in sorted(fs.find(base)) if k.endswith(".tif"))[len(base) :]
