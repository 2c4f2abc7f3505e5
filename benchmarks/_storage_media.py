"""Media and checks of the storage benchmark (``bench_storage``): raw file and Zarr I/O on local disk
(fsync, page cache dropped), raw and Zarr I/O against moto's S3 server in a child process, bit-flip
detection in stored chunks, and concurrent region writes into one chunk or shard."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import Stopwatch
from benchmarks._storage_io import (
    S3_PIXELS,
    Layout,
    Measured,
    StoreData,
    Variant,
    _regions,
    create_store,
    pixel_positions,
    read_pixels,
    read_store,
    tree_size,
    write_data,
)
from eowatch.pipelines.zarr_store import DEFAULT_ENCODING


# ---------------------------------------------------------------------------------------------- media
def _each_file(path: Path, action: Callable[[int], object]) -> None:
    for p in [path] if path.is_file() else sorted(path.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                action(fd)
            finally:
                os.close(fd)


def evict(path: Path) -> None:
    """Drop the page-cache pages of every (fsynced, hence clean) file under ``path``:
    ``posix_fadvise(DONTNEED)`` needs no root and touches only these files. The machine-wide
    ``/proc/sys/vm/drop_caches`` is not used (a shared machine); a VM host may still cache its disk."""
    _each_file(path, lambda fd: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))


def _read_file(path: Path, block: int) -> None:
    with path.open("rb", buffering=0) as f:
        while f.read(block):
            pass


def raw_file_io(path: Path, arrays: list[np.ndarray], block: int = 4 << 20) -> Measured:
    """Seconds to write ``arrays`` into one file (4 MiB writes, then fsync) and to read it cold and warm."""
    with Stopwatch() as write:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for arr in arrays:
                view = memoryview(np.ascontiguousarray(arr)).cast("B")
                for start in range(0, len(view), block):
                    os.write(fd, view[start : start + block])
            os.fsync(fd)
        finally:
            os.close(fd)
    evict(path)
    with Stopwatch() as cold:
        _read_file(path, block)
    with Stopwatch() as warm:
        _read_file(path, block)
    size = path.stat().st_size
    path.unlink()
    return {
        "write_s": write.seconds,
        "read_s": cold.seconds,
        "warm_read_s": warm.seconds,
        "objects": 1,
        "stored": size,
    }


def zarr_disk_io(root: Path, stores: list[StoreData], variant: Variant) -> Measured:
    """Seconds to write both stores' chunks into their templates (then fsync every file) and to read
    them cold and warm."""
    shutil.rmtree(root, ignore_errors=True)
    paths = [str(root / f"{d.name}.zarr") for d in stores]
    packings = [create_store(p, d, variant) for p, d in zip(paths, stores, strict=True)]
    with Stopwatch() as write:
        for p, d, pk in zip(paths, stores, packings, strict=True):
            write_data(p, d, pk)
        _each_file(root, os.fsync)
    evict(root)
    times = {}
    for key in ("read_s", "warm_read_s"):
        with Stopwatch() as sw:
            for p, d in zip(paths, stores, strict=True):
                read_store(p, list(d.arrays), {})
        times[key] = sw.seconds
    objects, stored = tree_size(root)
    return {"write_s": write.seconds, **times, "objects": objects, "stored": stored}


@contextlib.contextmanager
def moto_process(startup_timeout_s: float = 30.0) -> Iterator[Any]:
    """moto's S3 server on loopback in a child process (a thread would share this process's GIL with
    the client being measured); yields a ``StorageConfig`` pointing at it. Made-up credentials are put
    in this process's environment meanwhile when it has none."""
    from eowatch.infra.ports import DEFAULT_HOST, free_port, port_is_open
    from eowatch.infra.storage import StorageConfig

    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", DEFAULT_HOST, "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    added = {k: "bench" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k not in os.environ}
    os.environ.update(added)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not port_is_open(DEFAULT_HOST, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on port {port}")
            time.sleep(0.1)
        yield StorageConfig(endpoint_url=f"http://{DEFAULT_HOST}:{port}", region="us-east-1")
    finally:
        for key in added:
            os.environ.pop(key, None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chunk_payloads(data: StoreData) -> list[list[bytes]]:
    """Per variable, the decoded bytes of each (T, chunk, chunk) chunk that zarr stores (it skips chunks
    that are all fill value, so they are left out here too)."""
    out = []
    for name, values in data.arrays.items():
        blocks = [np.ascontiguousarray(values[:, ys, xs]) for ys, xs in _regions(values.shape, data.chunk)]
        fill = data.fills[name]
        out.append([b.tobytes() for b in blocks if not (np.isnan(b) if fill != fill else b == fill).all()])
    return out


def s3_raw_io(fs: Any, prefix: str, batches: list[list[bytes]]) -> Measured:
    """Seconds to PUT every payload as an object under ``prefix`` and to GET them back through s3fs:
    batch after batch, the objects of a batch concurrently (``pipe``, ``cat``)."""
    keys = [[f"{prefix}/{b}/{i}" for i in range(len(batch))] for b, batch in enumerate(batches)]
    with Stopwatch() as put:
        for names, batch in zip(keys, batches, strict=True):
            fs.pipe(dict(zip(names, batch, strict=True)))
    with Stopwatch() as get:
        got = sum(sum(map(len, fs.cat(names).values())) for names in keys)
    stored = sum(len(p) for batch in batches for p in batch)
    if got != stored:
        raise RuntimeError("raw S3 GETs returned another number of bytes than was PUT")
    fs.rm(prefix, recursive=True)
    return {
        "write_s": put.seconds,
        "read_s": get.seconds,
        "objects": sum(map(len, batches)),
        "stored": stored,
    }


def s3_zarr_io(
    config: Any, prefix: str, stores: list[StoreData], variant: Variant, layout: Layout
) -> Measured:
    """Seconds to create both stores' templates under ``prefix`` (reported apart), write their chunks,
    read them in full and read pixel time series, through eowatch's ``zarr_store`` (s3fs)."""
    from eowatch.infra.storage import ObjectPath
    from eowatch.pipelines.zarr_store import zarr_store

    stores_at = [(zarr_store(ObjectPath(f"{prefix}/{d.name}.zarr", config)), d) for d in stores]
    pixels = pixel_positions(stores[0].shape, S3_PIXELS)
    with Stopwatch() as template:
        packings = [create_store(s, d, variant, layout) for s, d in stores_at]
    with Stopwatch() as write:
        for (s, d), pk in zip(stores_at, packings, strict=True):
            write_data(s, d, pk)
    with Stopwatch() as read:
        for s, d in stores_at:
            read_store(s, list(d.arrays), {})
    with Stopwatch() as px:
        for s, d in stores_at:
            read_pixels(s, list(d.arrays), pixels, {})
    fs = config.filesystem()
    sizes = [info["size"] for key, info in fs.find(prefix, detail=True).items() if "zarr.json" not in key]
    fs.rm(prefix, recursive=True)
    times = {"write_s": write.seconds, "read_s": read.seconds, "pixel_s": px.seconds / len(pixels)}
    return {**times, "template_s": template.seconds, "objects": len(sizes), "stored": sum(sizes)}


# ---------------------------------------------------------------------------------------------- checks
def corruption_check(
    work: Path, block: np.ndarray, fill: Any, variant: Variant, trials: int
) -> dict[str, int]:
    """Flip one random bit of a stored chunk, ``trials`` times: how often the read fails (``error``),
    returns other values without an error (``silent``) or the same values (``harmless``)."""
    import zarr

    path = work / "corrupt.zarr"
    shutil.rmtree(path, ignore_errors=True)
    codecs = {} if variant.encoding is None else variant.encoding.codecs(block.dtype)
    arr = zarr.create_array(
        str(path), shape=block.shape, dtype=block.dtype, chunks=block.shape, fill_value=fill, **codecs
    )
    arr[...] = block
    (chunk_file,) = [p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json"]
    original, rng = chunk_file.read_bytes(), np.random.default_rng(0)
    counts = {"error": 0, "silent": 0, "harmless": 0}
    for _ in range(trials):
        damaged = bytearray(original)
        damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        chunk_file.write_bytes(bytes(damaged))
        try:
            got = zarr.open_array(str(path), mode="r")[...]
        except Exception:  # any decode failure is the outcome we hope for
            counts["error"] += 1
            continue
        counts["harmless" if got.tobytes() == block.tobytes() else "silent"] += 1
    shutil.rmtree(path)
    return counts


def concurrent_regions(work: Path, layout: Layout, t: int, px: int, trials: int = 3) -> list[int]:
    """Four threads write the four ``px`` regions of a (t, 2px, 2px) array at the same moment, as four
    chunk tasks of the pipeline may; per trial, how many of the four regions the array holds after."""
    import zarr

    path, kept = str(work / "race.zarr"), []
    for _ in range(trials):
        shutil.rmtree(path, ignore_errors=True)
        zarr.create_array(
            path, shape=(t, 2 * px, 2 * px), dtype="float32", chunks=layout.chunks(t),
            shards=layout.shards(t), fill_value=np.nan, **DEFAULT_ENCODING.codecs(np.dtype("float32")),
        )  # fmt: skip
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=_race_write, args=(path, i, px, barrier)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kept.append(int(np.isfinite(zarr.open_array(path, mode="r")[0, ::px, ::px]).sum()))
    shutil.rmtree(path, ignore_errors=True)
    return kept


def _race_write(path: str, i: int, px: int, barrier: threading.Barrier) -> None:
    import zarr

    arr = zarr.open_array(path, mode="r+")
    ys, xs = slice(i // 2 * px, (i // 2 + 1) * px), slice(i % 2 * px, (i % 2 + 1) * px)
    barrier.wait()
    arr[:, ys, xs] = np.full((arr.shape[0], px, px), i, np.float32)
