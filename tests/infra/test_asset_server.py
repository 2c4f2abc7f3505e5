"""AssetServer: HTTP Range over loopback, GDAL /vsicurl/ windowed reads, concurrent reads from processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from eowatch.errors import ServiceError
from eowatch.infra.services import AssetServer

pytestmark = pytest.mark.services

SIZE = 1024
GDAL_HTTP = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_HTTP_MAX_RETRY": "2",
    "VSI_CACHE": "FALSE",
}


def pattern() -> np.ndarray:
    """Known pixels: value = row * SIZE + col (uint32), so any window can be checked exactly."""
    return np.arange(SIZE * SIZE, dtype=np.uint32).reshape(SIZE, SIZE)


def read_window(url: str, row: int, col: int, size: int = 64) -> np.ndarray:
    """Windowed read through /vsicurl/ (runs in worker processes, hence module level)."""
    with rasterio.Env(**GDAL_HTTP), rasterio.open(f"/vsicurl/{url}") as src:
        return src.read(1, window=Window(col, row, size, size))


@pytest.fixture(scope="module")
def cog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    profile = {
        "driver": "COG",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": "uint32",
        "crs": "EPSG:32635",
        "transform": Affine(10, 0, 500000, 0, -10, 9100000),
        "blocksize": 256,
        "compress": "deflate",
    }
    with rasterio.open(root / "scene.tif", "w", **profile) as dst:
        dst.write(pattern(), 1)
    return root


@pytest.fixture(scope="module")
def assets(cog_dir: Path) -> Iterator[AssetServer]:
    with AssetServer(cog_dir) as server:
        yield server


def test_range_requests(assets: AssetServer, cog_dir: Path) -> None:
    url = assets.url_for(cog_dir / "scene.tif")
    data = (cog_dir / "scene.tif").read_bytes()
    response = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == data[100:200]
    assert httpx.head(url).headers["accept-ranges"] == "bytes"
    assert httpx.get(f"{assets.url}/missing.tif").status_code == 404


def test_vsicurl_windowed_read(assets: AssetServer) -> None:
    url = assets.url_for("scene.tif")
    with rasterio.Env(**GDAL_HTTP), rasterio.open(f"/vsicurl/{url}") as src:
        assert src.block_shapes[0] == (256, 256)
        assert src.overviews(1)  # a real COG with overviews
        window = src.read(1, window=Window(300, 700, 50, 40))
    np.testing.assert_array_equal(window, pattern()[700:740, 300:350])


def test_concurrent_reads_from_processes_and_threads(assets: AssetServer) -> None:
    url = assets.url_for("scene.tif")
    offsets = [(r, c) for r in (0, 512) for c in (0, 256, 512, 900)]  # 8 windows, several tiles
    expected = [pattern()[r : r + 64, c : c + 64] for r, c in offsets]
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=8, mp_context=context) as pool:
        got = list(pool.map(read_window, [url] * 8, *zip(*offsets, strict=True)))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(read_window, [url] * 8, *zip(*offsets, strict=True)))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_root_and_stop(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="not a directory"):
        AssetServer(tmp_path / "nope").start()
    with AssetServer(tmp_path) as server:
        url = server.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)
