"""Inputs, encoding variants and Zarr I/O primitives of the storage benchmark (``bench_storage``).

The real cubes it measures (built once by eowatch's own stages and cached), the codec/packing and
chunk/shard variants, and writing/reading them with plain Zarr v3 as the pipeline does.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from benchmarks._harness import CACHE, cached_archive
from eowatch.pipelines.zarr_store import DEFAULT_ENCODING, ZarrEncoding

ARCHIVE_KM, ARCHIVE_END = 5.12, dt.date(2026, 6, 30)
MB = 1e6
PIXELS, S3_PIXELS = 16, 4
"""Fixed random pixels whose time series are read per measurement (locally, on S3)."""
CORRUPTION_TRIALS = 60
"""Single-bit flips per encoding and store in the corruption check."""
RAW_DISK = "disk: raw file, 4 MiB writes + fsync"
RAW_S3 = "s3: raw PUT/GET of chunk-size objects"

Pack = Literal["uint8", "uint16"]
Measured = dict[str, Any]


# ---------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class StoreData:
    """The (time, y, x) variables of one store, in memory."""

    name: str
    """``cube`` or ``change``."""
    arrays: dict[str, np.ndarray]
    """Variable -> values in their native dtype (float32, uint8, uint16)."""
    fills: dict[str, Any]
    """Variable -> Zarr fill value (NaN for floats, 0 for integers in eowatch's stores)."""
    chunk: int
    """Chunk side of the grid in pixels (the pipeline writes (T, chunk, chunk) regions)."""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    @property
    def shape(self) -> tuple[int, int, int]:
        return next(iter(self.arrays.values())).shape


def ensure_stores() -> tuple[Path, Path]:
    """(cube, change) stores of a monitoring run over the cached archive, under ``benchmarks/.cache``.

    Built once by eowatch's own search, cube and change stages on a 2-worker LocalCluster. Complete
    stores found there are used as they are, whatever run token they carry: the token moves with any
    change to the code's parameters, the measured data does not need to.
    """
    from eowatch.pipelines.zarr_store import read_attrs

    archive = cached_archive(ARCHIVE_KM, ARCHIVE_END)
    out = CACHE / f"storage-inputs-{archive.name.removeprefix('archive-')}"
    cube, change = out / "cube.zarr", out / "change.zarr"
    if all(read_attrs(p).get("eowatch_status") == "complete" for p in (cube, change)):
        return cube, change
    shutil.rmtree(out, ignore_errors=True)
    _monitor_stages(archive, out)
    return cube, change


def _monitor_stages(archive: Path, out: Path) -> None:
    from eowatch.demo import archive_run_params, served_archive
    from eowatch.infra.cluster import ClusterConfig, cluster_client
    from eowatch.pipelines.stages import change_stage_run, cube_stage_run, prepare_run, search_stage

    with served_archive(archive) as served:
        run = prepare_run(archive_run_params(served, out, vhr_collection=None).to_config())
        search_stage(run, info=lambda _m: None)
        with cluster_client(ClusterConfig(n_workers=2, dashboard=False)) as client:
            cube_stage_run(run, client, info=lambda _m: None)
            change_stage_run(run, client, info=lambda _m: None)


def load_store(path: Path, name: str) -> StoreData:
    """Every (time, y, x) variable of a Zarr v3 store, in memory."""
    import zarr

    group = zarr.open_group(str(path), mode="r", zarr_format=3)
    arrays, fills, chunk = {}, {}, 0
    for key in sorted(group.array_keys()):
        arr = group[key]
        if arr.ndim == 3:
            arrays[key], fills[key], chunk = arr[...], arr.fill_value, int(arr.chunks[1])
    return StoreData(name, arrays, fills, chunk)


def operating_threshold(change_path: Path) -> float:
    """The threshold the change mask was made with: the run's override, else the model card's."""
    import zarr

    from eowatch.models.registry import card_file_of

    attrs = zarr.open_group(str(change_path), mode="r", zarr_format=3).attrs
    override = json.loads(str(attrs.get("parameters", "{}"))).get("change", {}).get("threshold")
    if override is not None:
        return float(override)
    card = card_file_of(json.loads(str(attrs["model"]))["name"])
    return float(json.loads(card.read_text())["decision_threshold"])


# -------------------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Packing:
    """Lossy packing of floats into unsigned integer codes (CF ``add_offset``/``scale_factor`` style):
    ``x ~ offset + code * scale``; codes ``0 .. max-1`` hold values, the dtype's largest code holds NaN.

    Rounding to the nearest code bounds the error by ``scale / 2`` (plus float32 rounding on decode).
    """

    offset: float
    """Value of code 0 (the smallest finite value), in the variable's units."""
    scale: float
    """Units per code step."""
    dtype: Pack
    """Stored integer dtype."""

    @classmethod
    def fit(cls, values: np.ndarray, dtype: Pack) -> Packing:
        """Packing spanning the finite range of ``values``: the best case, since the pipeline writes
        chunks before the whole range is known and would need fixed, physically bounded ranges."""
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return cls(lo, (hi - lo) / (np.iinfo(dtype).max - 1) if hi > lo else 1.0, dtype)

    @property
    def fill(self) -> int:
        """The code that stands for NaN."""
        return int(np.iinfo(self.dtype).max)

    @property
    def max_abs_error(self) -> float:
        """Bound of ``|unpack(pack(x)) - x|`` for finite ``x`` in range, before float32 rounding."""
        return self.scale / 2

    def pack(self, values: np.ndarray) -> np.ndarray:
        """Floats -> codes (NaN -> :attr:`fill`; values out of range clip to the end codes)."""
        codes = np.rint((values.astype(np.float64) - self.offset) / self.scale)
        codes = np.clip(np.nan_to_num(codes, nan=0.0), 0, self.fill - 1)
        codes[~np.isfinite(values)] = self.fill
        return codes.astype(self.dtype)

    def unpack(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> float32 values (:attr:`fill` -> NaN)."""
        out = (self.offset + codes.astype(np.float64) * self.scale).astype(np.float32)
        out[codes == self.fill] = np.nan
        return out


@dataclass(frozen=True)
class Variant:
    """One way to encode the stores."""

    label: str
    encoding: ZarrEncoding | None
    """Codecs; None: zarr's own defaults (what eowatch wrote before choosing explicitly)."""
    pack: Pack | None = None
    """Lossy packing of the float variables into this dtype (integer variables are stored as they are)."""

    @property
    def lossy(self) -> bool:
        return self.pack is not None or (self.encoding is not None and not self.encoding.lossless)


@dataclass(frozen=True)
class Layout:
    """Chunk shape and sharding of every (time, y, x) array."""

    label: str
    time_chunk: int | None
    """Periods per chunk; None: the whole time axis (T)."""
    px: int
    """Chunk side in pixels (of the inner chunks when sharded)."""
    shard_px: int | None = None
    """Shard side in pixels (one object holds (T, shard, shard)); None: no shards."""

    def chunks(self, t: int) -> tuple[int, int, int]:
        return (self.time_chunk or t, self.px, self.px)

    def shards(self, t: int) -> tuple[int, int, int] | None:
        return None if self.shard_px is None else (t, self.shard_px, self.shard_px)


def describe(encoding: ZarrEncoding) -> str:
    """Short label of an encoding, e.g. ``zstd 3 + checksum``."""
    text = (
        "none"
        if encoding.compressor == "none"
        else f"{encoding.compressor.replace('-', ' ')} {encoding.level}"
    )
    text += " + checksum" if encoding.checksum else ""
    return text + (f", bit-round {encoding.float_keepbits}" if encoding.float_keepbits else "")


ZARR_DEFAULT = Variant("zarr default: zstd 0 (= 3), no checksum", None)
DEFAULT = Variant(describe(DEFAULT_ENCODING), DEFAULT_ENCODING)
NONE = Variant("none", ZarrEncoding(compressor="none", checksum=False))
TODAY = Layout("(T,256,256) chunks", None, 256)
UINT8 = f"uint8 offset+scale, {DEFAULT.label}"


def codec_variants() -> list[Variant]:
    """Lossless codecs (each with a chunk checksum, but zarr's default), then the lossy options."""
    z = ZarrEncoding
    lossless = [
        NONE,
        ZARR_DEFAULT,
        Variant("zstd 1 + checksum", z(level=1)),
        Variant("zstd 3 + checksum", z(level=3)),
        Variant("zstd 9 + checksum", z(level=9)),
        Variant("blosc zstd 5 shuffle + crc32c", z(compressor="blosc-zstd", level=5)),
        Variant("blosc lz4 5 shuffle + crc32c", z(compressor="blosc-lz4", level=5)),
    ]
    if not any(v.encoding == DEFAULT_ENCODING for v in lossless):
        lossless.append(DEFAULT)
    lossy = [
        Variant(f"bit-round 10 bits, {DEFAULT.label}", replace(DEFAULT_ENCODING, float_keepbits=10)),
        Variant(f"bit-round 7 bits, {DEFAULT.label}", replace(DEFAULT_ENCODING, float_keepbits=7)),
        Variant(f"uint16 offset+scale, {DEFAULT.label}", DEFAULT_ENCODING, pack="uint16"),
        Variant(UINT8, DEFAULT_ENCODING, pack="uint8"),
    ]
    return lossless + lossy


def layouts(chunk: int) -> list[Layout]:
    """Today's chunks, one period per chunk, 2x larger chunks, shards of 2x2 and of 4x4 inner chunks."""
    half, double = chunk // 2, 2 * chunk
    return [
        TODAY,
        Layout(f"(1,{chunk},{chunk}) chunks", 1, chunk),
        Layout(f"(T,{double},{double}) chunks", None, double),
        Layout(f"{double} px shards of (T,{chunk},{chunk})", None, chunk, double),
        Layout(f"{double} px shards of (T,{half},{half})", None, half, double),
    ]


# -------------------------------------------------------------------------------------------- zarr I/O
def _regions(shape: tuple[int, ...], px: int) -> Iterator[tuple[slice, slice]]:
    for y in range(0, shape[1], px):
        for x in range(0, shape[2], px):
            yield slice(y, y + px), slice(x, x + px)


def create_store(store: Any, data: StoreData, variant: Variant, layout: Layout = TODAY) -> dict[str, Packing]:
    """The template: every array's metadata, consolidated, no chunk (as ``create_template``). Returns the
    packings of the lossy variants (variable -> packing)."""
    import zarr

    packings = {}
    if variant.pack is not None:
        packings = {n: Packing.fit(v, variant.pack) for n, v in data.arrays.items() if v.dtype.kind == "f"}
    group = zarr.open_group(store, mode="w", zarr_format=3)
    for name, values in data.arrays.items():
        pk = packings.get(name)
        dtype = np.dtype(pk.dtype) if pk else values.dtype
        t = values.shape[0]
        group.create_array(
            name, shape=values.shape, dtype=dtype, chunks=layout.chunks(t), shards=layout.shards(t),
            fill_value=pk.fill if pk else data.fills[name], dimension_names=("time", "y", "x"),
            **({} if variant.encoding is None else variant.encoding.codecs(dtype)),
        )  # fmt: skip
    zarr.consolidate_metadata(store, zarr_format=3)
    return packings


def write_data(
    store: Any, data: StoreData, packings: dict[str, Packing], region_px: int | None = None
) -> None:
    """Write every variable into its template: whole arrays (zarr encodes and writes the chunks
    concurrently) or, with ``region_px``, region after region as the pipeline's chunk tasks do."""
    import zarr

    group = zarr.open_group(store, mode="r+", zarr_format=3)
    for name, values in data.arrays.items():
        arr, pk = group[name], packings.get(name)
        regions = [(slice(None), slice(None))] if region_px is None else _regions(values.shape, region_px)
        for ys, xs in regions:
            arr[:, ys, xs] = pk.pack(values[:, ys, xs]) if pk else values[:, ys, xs]


def read_store(store: Any, names: list[str], packings: dict[str, Packing]) -> dict[str, np.ndarray]:
    """Every variable in full, decoded (packings undone: float32)."""
    import zarr

    group = zarr.open_group(store, mode="r", zarr_format=3)
    out = {name: group[name][...] for name in names}
    return {n: packings[n].unpack(v) if n in packings else v for n, v in out.items()}


def read_pixels(
    store: Any, names: list[str], pixels: list[tuple[int, int]], packings: dict[str, Packing]
) -> None:
    """The time series of every variable at each pixel (the group opened once, then point reads)."""
    import zarr

    group = zarr.open_group(store, mode="r", zarr_format=3)
    arrays = [(name, group[name]) for name in names]
    for y, x in pixels:
        for name, arr in arrays:
            series = arr[:, y, x]
            if name in packings:
                packings[name].unpack(series)


def pixel_positions(shape: tuple[int, ...], n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` fixed random (y, x) pixels of a (time, y, x) shape."""
    rng = np.random.default_rng(seed)
    return [(int(y), int(x)) for y, x in rng.integers(0, shape[1:], size=(n, 2))]


def tree_size(path: Path) -> tuple[int, int]:
    """(objects, bytes) of the chunk (or shard) files under a local store; ``zarr.json`` left out."""
    files = [p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json"]
    return len(files), sum(p.stat().st_size for p in files)


def identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Same variables, dtypes and bits (NaN payloads included)."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a
    )


# -------------------------------------------------------------------------------------------- accuracy
def max_abs_errors(data: StoreData, decoded: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest |decoded - original| of the float variables (cube: per reflectance and dB group; change:
    per variable). A NaN that became a number, or the reverse, is an infinite error."""
    out: dict[str, float] = {}
    for name, values in data.arrays.items():
        if values.dtype.kind != "f":
            continue
        got = decoded[name].astype(np.float64)
        moved = bool((np.isnan(values) != np.isnan(got)).any())
        err = np.inf if moved else float(np.nanmax(np.abs(got - values), initial=0.0))
        key = name if data.name != "cube" else ("dB" if name.endswith("_db") else "reflectance")
        out[key] = max(out.get(key, 0.0), err)
    return {k: float(f"{v:.3g}") for k, v in out.items()}


def mask_flips(reference: np.ndarray, other: np.ndarray, thresholds: list[float]) -> dict[str, int]:
    """Pixels x transitions whose ``p >= threshold`` decision differs between two probability arrays."""
    return {f"{t:g}": int(((reference >= t) != (other >= t)).sum()) for t in thresholds}
