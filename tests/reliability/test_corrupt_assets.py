"""Damaged COGs in the archive: each fails the cube stage with an error naming the asset, and nothing is
recorded as done.

tests/pipelines/test_monitor_flow.py already truncates a COG to its first 2000 bytes (header only)
through the CLI; here the damage is inside the pixel data or the file is not a TIFF at all, and the
checks go down to the chunk ledger. Each case damages one Sentinel-2 band of the scene under the
run's one chunk, in a private copy of the archive served on loopback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from eowatch.errors import AssetError
from eowatch.pipelines.grid import ChunkKey
from tests.reliability.conftest import ONE_CHUNK_BOUNDS, THREADS, copy_archive, run_params

pytestmark = [pytest.mark.services, pytest.mark.slow]

SCENE_ASSET = "assets/sentinel-2-l2a/S2A_31UES_20260401_0_L2A/{band}.tif"
"""A scene that covers the run's chunk: its first tile holds the chunk's pixels."""


def _first_tile(path: Path) -> tuple[int, int]:
    """(byte offset, byte count) of the first tile of band 1 of a GeoTIFF."""
    with rasterio.open(path) as src:
        offset = src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1)
        size = src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1)
    return int(offset), int(size)


def _garbage_tile(path: Path) -> None:
    offset, size = _first_tile(path)
    data = bytearray(path.read_bytes())
    data[offset : offset + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _truncated_tile(path: Path) -> None:
    offset, size = _first_tile(path)
    path.write_bytes(path.read_bytes()[: offset + size // 2])


def _wrong_magic(path: Path) -> None:
    path.write_bytes(b"GIF8" + path.read_bytes()[4:])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _deleted(path: Path) -> None:
    path.unlink()


DAMAGES = {
    "garbage tile": (_garbage_tile, "red", r"IReadBlock failed .*ZSTD"),
    "tile cut off": (_truncated_tile, "nir", r"IReadBlock failed .*Read error"),
    "wrong magic bytes": (_wrong_magic, "swir16", "not recognized as being in a supported file format"),
    "empty file": (_empty, "blue", "not recognized as being in a supported file format"),
    "missing (404)": (_deleted, "scl", "HTTP response code: 404"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_cog_fails_naming_it(damage: str, small_archive: Path, tmp_path: Path) -> None:
    from eowatch.demo import served_archive
    from eowatch.infra.cluster import cluster_client
    from eowatch.pipelines import stages

    spoil, band, reason = DAMAGES[damage]
    archive = copy_archive(small_archive, tmp_path / "archive")
    relpath = SCENE_ASSET.format(band=band)
    spoil(archive / relpath)
    out = tmp_path / "out"
    with served_archive(archive) as served:
        run = stages.prepare_run(run_params(served, out, bounds=ONE_CHUNK_BOUNDS).to_config())
        stages.search_stage(run)
        with cluster_client(THREADS) as client, pytest.raises(AssetError) as info:
            stages.cube_stage_run(run, client)
    message = str(info.value)
    assert f"could not read asset {served.asset_url}/{relpath}: " in message
    assert re.search(reason, message), message
    _assert_chunk_not_done(run)


def _assert_chunk_not_done(run: Any) -> None:
    from eowatch.pipelines.zarr_store import read_attrs

    assert ChunkKey(0, 0) not in run.layout.ledger("cube").done()
    assert not run.layout.cube.exists() and not run.layout.change.exists()
    assert read_attrs(run.layout.staging("cube")).get("eowatch_status") == "in-progress"
