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
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import CACHE, Stopwatch, ratio
from benchmarks._storage_io import (
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
    StoreData,
    Variant,
    codec_variants,
    create_store,
    ensure_stores,
    identical,
    layouts,
    load_store,
    mask_flips,
    max_abs_errors,
    operating_threshold,
    pixel_positions,
    read_pixels,
    read_store,
    tree_size,
    write_data,
)
from benchmarks._storage_media import (
    chunk_payloads,
    concurrent_regions,
    corruption_check,
    moto_process,
    raw_file_io,
    s3_raw_io,
    s3_zarr_io,
    zarr_disk_io,
)

TITLE = "5. Storage choices: codecs, chunks and shards; Zarr vs raw disk and S3 bandwidth"


# ------------------------------------------------------------------------------------------------ parts
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
