"""Storage choices for eowatch's cubes: codecs, chunk shapes and shards, Zarr vs raw disk and S3 bandwidth.

Inputs: a real analysis cube and change cube built by eowatch's cube and change stages from a cached
synthetic archive (seed 5, 5.12 km, April-June 2026: 512 x 512 px at 10 m, 3 monthly periods, 2
transitions), read into memory once. Every variant writes all their (time, y, x) variables with plain zarr
v3 as the pipeline does (a metadata template, consolidated, then the chunks; same dtypes, fill values and
(T, 256, 256) chunks) into a temporary folder under ``benchmarks/.cache`` and reads them back. Throughputs
are MB/s (10^6 bytes) of decoded data; times are the best of the repetitions.

1. Codecs: size, chunk write, full read, one-pixel time-series read (every variable at one pixel: the
   notebook's access pattern), lossless round trip; for the lossy options (bit rounding, uint8/uint16
   offset + scale packing) the max abs error and the change-mask decisions that flip.
2. Chunk shapes and shards with the default codec: objects, size, whole-array and 256 px region writes
   (the pipeline's chunk tasks), full and pixel reads.
3. Zarr vs the raw bandwidth of the same medium in the same run: local disk (one file, fsync, its pages
   dropped with ``posix_fadvise``) and moto's S3 server on loopback in a child process (raw PUT/GET of
   chunk-size objects through s3fs).

Checks: bit flips in a stored chunk (detected or silently decoded), and four concurrent region writes
into one chunk vs one shard.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import CACHE, Stopwatch, ratio
from benchmarks._storage_io import (  # noqa: F401  (re-exported for the tests)
    ARCHIVE_END,
    ARCHIVE_KM,
    CORRUPTION_TRIALS,
    DEFAULT,
    MB,
    NONE,
    PIXELS,
    RAW_DISK,
    RAW_S3,
    S3_PIXELS,
    TODAY,
    UINT8,
    ZARR_DEFAULT,
    Layout,
    Measured,
    Pack,
    Packing,
    StoreData,
    Variant,
    _monitor_stages,
    _regions,
    codec_variants,
    create_store,
    describe,
    ensure_stores,
    identical,
    layouts,
    load_store,
    mask_flips,
    max_abs_errors,
    operating_threshold,
    read_pixels,
    read_store,
    tree_size,
    write_data,
)
from eowatch.pipelines.zarr_store import DEFAULT_ENCODING

TITLE = "5. Storage choices: codecs, chunks and shards; Zarr vs raw disk and S3 bandwidth"


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


# ------------------------------------------------------------------------------------------------ parts
def pixel_positions(shape: tuple[int, ...], n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` fixed random (y, x) pixels of a (time, y, x) shape."""
    rng = np.random.default_rng(seed)
    return [(int(y), int(x)) for y, x in rng.integers(0, shape[1:], size=(n, 2))]


def best(runs: list[Measured]) -> Measured:
    """Times (keys ending ``_s``) as the best of the runs; everything else from the first run."""
    return {k: min(r[k] for r in runs) if k.endswith("_s") else v for k, v in runs[0].items()}


def make_row(part: str, store: str, label: str, nbytes: int, m: Measured) -> dict[str, Any]:
    """A report row from decoded bytes and the best measurement (MB/s of decoded data, ms per pixel)."""

    def mbps(seconds: float) -> float:
        return round(nbytes / MB / seconds) if seconds > 0 else 0.0

    row = {"part": part, "store": store, "variant": label, "objects": m["objects"]}
    row |= {"stored_MB": round(m["stored"] / MB, 2), "x_smaller": round(nbytes / m["stored"], 2)}
    row |= {"write_MBps": mbps(m["write_s"]), "read_MBps": mbps(m["read_s"])}
    for key in ("write_cpu", "read_cpu", "warm_read", "region_write"):
        if f"{key}_s" in m:
            row[f"{key}_MBps"] = mbps(m[f"{key}_s"])
    for key in ("pixel", "template"):
        if f"{key}_s" in m:
            row[f"{key}_ms"] = round(1000 * m[f"{key}_s"], 2)
    return row


def measure_store(
    path: Path, data: StoreData, variant: Variant, layout: Layout, pixels: list
) -> tuple[Measured, dict]:
    """Template, chunk writes (timed), size, full read and pixel reads of one local store; also returns
    the decoded arrays."""
    shutil.rmtree(path, ignore_errors=True)
    packings = create_store(str(path), data, variant, layout)
    with Stopwatch() as write:
        write_data(str(path), data, packings)
    with Stopwatch() as read:
        decoded = read_store(str(path), list(data.arrays), packings)
    with Stopwatch() as px:
        read_pixels(str(path), list(data.arrays), pixels, packings)
    objects, stored = tree_size(path)
    times = {"write_s": write.seconds, "read_s": read.seconds, "pixel_s": px.seconds / len(pixels)}
    cpu = {"write_cpu_s": write.cpu_seconds, "read_cpu_s": read.cpu_seconds}
    return {**times, **cpu, "objects": objects, "stored": stored}, decoded


def _quality(data: StoreData, decoded: dict[str, np.ndarray], variant: Variant, threshold: float) -> dict:
    if not variant.lossy:
        return {"bit_identical": identical(decoded, data.arrays)}
    out: dict[str, Any] = {"max_abs_err": max_abs_errors(data, decoded)}
    if "change_probability" in data.arrays:
        p, q = data.arrays["change_probability"], decoded["change_probability"]
        out["mask_flips"] = mask_flips(p, q, sorted({0.5, threshold}))
    return out


def codec_part(work: Path, stores: list[StoreData], reps: int, threshold: float) -> list[dict[str, Any]]:
    """Part 1: every codec variant on both stores (variants take turns within a repetition)."""
    runs: dict[tuple[str, str], list[Measured]] = {}
    quality: dict[tuple[str, str], dict[str, Any]] = {}
    pixels = pixel_positions(stores[0].shape, PIXELS)
    for rep in range(reps):
        for variant in codec_variants():
            for data in stores:
                m, decoded = measure_store(work / f"{data.name}.zarr", data, variant, TODAY, pixels)
                runs.setdefault((variant.label, data.name), []).append(m)
                if rep == 0:
                    quality[(variant.label, data.name)] = _quality(data, decoded, variant, threshold)
    return [
        {**make_row("codec", d.name, v.label, d.nbytes, best(runs[(v.label, d.name)])), "lossy": v.lossy}
        | quality[(v.label, d.name)]
        for v in codec_variants()
        for d in stores
    ]


def layout_part(work: Path, stores: list[StoreData], reps: int) -> list[dict[str, Any]]:
    """Part 2: chunk shapes and shards with the default codec; whole-array and 256 px region writes."""
    runs: dict[tuple[str, str], list[Measured]] = {}
    same: dict[tuple[str, str], bool] = {}
    pixels = pixel_positions(stores[0].shape, PIXELS)
    for rep in range(reps):
        for layout in layouts(stores[0].chunk):
            for data in stores:
                path = work / f"{data.name}.zarr"
                m, decoded = measure_store(path, data, DEFAULT, layout, pixels)
                shutil.rmtree(path)
                create_store(str(path), data, DEFAULT, layout)
                with Stopwatch() as regions:
                    write_data(str(path), data, {}, region_px=data.chunk)
                runs.setdefault((layout.label, data.name), []).append(
                    {**m, "region_write_s": regions.seconds}
                )
                if rep == 0:
                    again = read_store(str(path), list(data.arrays), {})
                    same[(layout.label, data.name)] = identical(decoded, data.arrays) and identical(
                        again, data.arrays
                    )
    return [
        make_row("layout", d.name, lay.label, d.nbytes, best(runs[(lay.label, d.name)]))
        | {"bit_identical": same[(lay.label, d.name)]}
        for lay in layouts(stores[0].chunk)
        for d in stores
    ]


def media_part(work: Path, stores: list[StoreData], reps: int) -> list[dict[str, Any]]:
    """Part 3: raw bandwidth of the local disk and of the S3 server, and Zarr on each."""
    per_variable = [batch for d in stores for batch in chunk_payloads(d)]
    shards = layouts(stores[0].chunk)[3]
    runs: dict[str, list[Measured]] = {}
    with moto_process() as config:
        config.client().create_bucket(Bucket="bench")
        fs = config.filesystem()
        for _ in range(reps):
            measured = {
                RAW_DISK: raw_file_io(work / "raw.bin", [a for d in stores for a in d.arrays.values()])
            }
            for v in (DEFAULT, NONE):
                measured[f"disk: zarr {v.label} (+ fsync)"] = zarr_disk_io(work / "disk", stores, v)
            measured[RAW_S3] = s3_raw_io(fs, "bench/raw", [[p for batch in per_variable for p in batch]])
            measured[f"{RAW_S3}, one variable at a time"] = s3_raw_io(fs, "bench/raw", per_variable)
            for v, lay in ((DEFAULT, TODAY), (NONE, TODAY), (DEFAULT, shards)):
                label = f"s3: zarr {v.label}" + ("" if lay is TODAY else f", {lay.label}")
                measured[label] = s3_zarr_io(config, "s3://bench/zarr", stores, v, lay)
            for label, m in measured.items():
                runs.setdefault(label, []).append(m)
    total = sum(d.nbytes for d in stores)
    return [make_row("medium", "cube+change", label, total, best(ms)) for label, ms in runs.items()]


# ----------------------------------------------------------------------------------------------- report
def storage_ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Headline ratios: the chosen default vs zarr's, uint8 packing, shards vs today, Zarr vs raw."""
    by = {(r["part"], r["store"], r["variant"]): r for r in rows}
    out: dict[str, float | None] = {}
    for store in ("cube", "change"):
        d, z = by[("codec", store, DEFAULT.label)], by[("codec", store, ZARR_DEFAULT.label)]
        out[f"{store}: size, eowatch default / zarr default"] = ratio(d["stored_MB"], z["stored_MB"], 3)
        for what in ("write", "read", "write_cpu", "read_cpu"):
            label = what.replace("_cpu", " CPU-time")
            out[f"{store}: {label} speed, eowatch default / zarr default"] = ratio(
                d[f"{what}_MBps"], z[f"{what}_MBps"]
            )
        u8 = by[("codec", store, UINT8)]
        out[f"{store}: size, uint8 packing / eowatch default"] = ratio(u8["stored_MB"], d["stored_MB"], 3)
        today, shard = (by[("layout", store, lay.label)] for lay in (TODAY, layouts(256)[3]))
        out[f"{store}: objects, {shard['variant']} / today"] = ratio(shard["objects"], today["objects"])
        out[f"{store}: pixel read time, {shard['variant']} / today"] = ratio(
            shard["pixel_ms"], today["pixel_ms"]
        )
    media = {r["variant"]: r for r in rows if r["part"] == "medium"}
    for label in (DEFAULT.label, NONE.label):
        disk, s3 = media[f"disk: zarr {label} (+ fsync)"], media[f"s3: zarr {label}"]
        for what, raw in (("write", "write"), ("cold read", "read"), ("warm read", "warm_read")):
            out[f"disk: zarr {label} {what} / raw {what}"] = ratio(
                disk[f"{raw}_MBps"], media[RAW_DISK][f"{raw}_MBps"]
            )
        out[f"s3: zarr {label} write / raw PUT"] = ratio(s3["write_MBps"], media[RAW_S3]["write_MBps"])
        out[f"s3: zarr {label} read / raw GET"] = ratio(s3["read_MBps"], media[RAW_S3]["read_MBps"])
    return out


def storage_checks(
    rows: list[dict], corruption: dict[str, dict[str, int]], races: dict[str, list[int]]
) -> dict:
    """Lossless rows bit-identical, lossy rows kept their NaNs, the bit flips and the concurrent writes."""
    lossless = [r for r in rows if "bit_identical" in r]
    finite = all(np.isfinite(v) for r in rows if r.get("lossy") for v in r["max_abs_err"].values())
    same = sum(r["bit_identical"] for r in lossless)
    out: dict[str, Any] = {
        "lossless codecs and layouts decode bit-identical": f"{same}/{len(lossless)}",
        "lossy options keep every NaN and only NaNs": finite,
    }
    out |= {f"single-bit flips in a chunk, {label}": counts for label, counts in corruption.items()}
    out |= {f"4 concurrent 256 px region writes, regions kept, {k}": v for k, v in races.items()}
    return out


def _filesystem(path: Path) -> str:
    """``fstype on device`` of the mount holding ``path`` (from /proc/mounts)."""
    best_mount = ("", "?", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if str(path.resolve()).startswith(mnt) and len(mnt) > len(best_mount[0]):
                best_mount = (mnt, dev, fstype)
    return f"{best_mount[2]} on {best_mount[1]}"


def _checks(work: Path, stores: list[StoreData]) -> tuple[dict[str, dict[str, int]], dict[str, list[int]]]:
    corruption = {}
    for variant in (ZARR_DEFAULT, DEFAULT):
        for data in stores:
            name = next(n for n, a in data.arrays.items() if a.dtype.kind == "f")
            block = data.arrays[name][:, : data.chunk, : data.chunk]
            counts = corruption_check(work, block, data.fills[name], variant, CORRUPTION_TRIALS)
            corruption[f"{variant.label}, {data.name}/{name}"] = counts
    chunk = stores[0].chunk
    return corruption, {
        lay.label: concurrent_regions(work, lay, 3, chunk) for lay in (TODAY, layouts(chunk)[3])
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark: best of 3 repetitions (1 with ``quick``)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*Numcodecs codecs are not in the Zarr")
    reps = 1 if quick else 3
    cube_path, change_path = ensure_stores()
    stores = [load_store(cube_path, "cube"), load_store(change_path, "change")]
    threshold = operating_threshold(change_path)
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="storage-") as tmp:
        work = Path(tmp)
        rows = codec_part(work, stores, reps, threshold) + layout_part(work, stores, reps)
        rows += media_part(work, stores, reps)
        corruption, races = _checks(work, stores)
    t, h, w = stores[0].shape
    variables = {d.name: ", ".join(f"{n} {k}" for k, n in _dtype_counts(d).items()) for d in stores}
    return {
        "name": "storage",
        "title": TITLE,
        "params": {
            "inputs": f"eowatch cube and change cube, archive seed 5, {ARCHIVE_KM:g} km, "
            f"2026-04-01..{ARCHIVE_END}: {w}x{h} px, cube T={t}, change T={stores[1].shape[0]}",
            "variables": variables,
            "decoded_MB": {d.name: round(d.nbytes / MB, 2) for d in stores},
            "repetitions": f"best of {reps}",
            "pixel_reads": f"{PIXELS} fixed pixels (S3: {S3_PIXELS}), every variable's time series, "
            "ms per pixel",
            "change_threshold": threshold,
            "change_decisions": _decisions(stores[1].arrays["change_probability"], threshold),
            "disk": _filesystem(CACHE),
            "writes": "chunks into an existing template (consolidated metadata), whole arrays: zarr encodes "
            "and writes chunks concurrently; region_write: 256 px regions one after the other (the "
            "pipeline's tasks); codec and layout parts without fsync (page cache)",
            "reads": "codec and layout parts from the page cache (decode-bound); medium part cold: files "
            "fsynced, then their pages dropped with posix_fadvise(DONTNEED) (no root, this file only)",
        },
        "rows": rows,
        "ratios": storage_ratios(rows),
        "checks": storage_checks(rows, corruption, races),
        "notes": [
            "MB/s are of decoded data, so a codec that shrinks the bytes can beat raw bandwidth on a slow "
            "medium; stored_MB counts chunk objects only (metadata left out).",
            "moto is an in-memory Python server sharing the 2 cores with the client: its S3 figures show "
            "per-request overheads, not AWS S3 bandwidth.",
            "Lossy packing uses each variable's own finite range (the best case); mask_flips count pixels x "
            "transitions whose change decision moves, at 0.5 and at the operating threshold.",
        ],
    }


def _decisions(p: np.ndarray, threshold: float) -> dict[str, int]:
    """Pixels x transitions with a probability, and how many are changed at 0.5 and at the threshold."""
    out = {"pixels x transitions": int(np.isfinite(p).sum())}
    return out | {f"changed at {t:g}": int((p >= t).sum()) for t in sorted({0.5, threshold})}


def _dtype_counts(data: StoreData) -> dict[str, int]:
    counts: dict[str, int] = {}
    for values in data.arrays.values():
        counts[str(values.dtype)] = counts.get(str(values.dtype), 0) + 1
    return counts


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
