"""Zarr v3 stores written by region: a metadata-only template first, then one write per chunk.

Chunk-aligned region writes touch disjoint Zarr chunks, so workers write in parallel without locks and a
chunk is either fully written or not at all (each Zarr chunk is one file, written then renamed by the
local store; on object storage one object, written by a single PUT). A store is a local folder or an
``s3://`` URL (:class:`~eowatch.infra.storage.ObjectPath`, reached through Zarr's ``FsspecStore`` over
s3fs with the retry policy of its :class:`~eowatch.infra.storage.StorageConfig`). Readers use
``xarray.open_zarr``; CRS and transform are stored the rioxarray way (a ``spatial_ref`` coordinate with
CF grid-mapping attributes).

How chunks are encoded is explicit (:class:`ZarrEncoding`, :data:`DEFAULT_ENCODING`: zstd level 3 with
zstd's content checksum) rather than left to the installed Zarr's defaults, so a Zarr upgrade cannot
change the bytes a resumed run writes, and a chunk damaged at rest fails to decode instead of decoding
into other values. The choice is measured in ``benchmarks/bench_storage.py`` (docs/storage-choices.md).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr

from eowatch.errors import InputError, StorageError
from eowatch.infra.storage import Location, ObjectPath, location, redact_secrets, register_fsspec_defaults
from eowatch.pipelines.grid import GridSpec

warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
# Code that opens an s3:// store by its URL alone (``zarr.open_group(url)`` in a Dask task) reaches the
# endpoint configured in this process's environment, with the retry policy; explicit options still win.
# A malformed setting is reported where a location is resolved (``location()``), not on import.
with contextlib.suppress(InputError):
    register_fsspec_defaults()


Compressor = Literal["zstd", "blosc-zstd", "blosc-lz4", "none"]
COMPRESSORS: tuple[Compressor, ...] = get_args(Compressor)


@dataclass(frozen=True)
class ZarrEncoding:
    """How the chunks of a store's data variables are encoded (lossless unless ``float_keepbits`` is set).

    Every field but ``float_keepbits`` changes only the bytes on disk: decoded values are bit-identical.
    """

    compressor: Compressor = "zstd"
    """Bytes-to-bytes compressor of every chunk; ``blosc-*`` use Blosc with the given inner codec."""
    level: int = 3
    """Compression level: zstd 1-22 (3 is libzstd's default), Blosc 1-9; ignored for ``none``."""
    checksum: bool = True
    """Store a checksum per chunk so that a chunk damaged at rest fails to decode (an error) instead of
    decoding into other values: zstd's 4-byte content checksum, or a ``crc32c`` codec for the others."""
    shuffle: bool = True
    """Blosc only: byte-shuffle elements before compressing."""
    float_keepbits: int | None = None
    """Opt-in, LOSSY: keep this many mantissa bits of floating-point variables (numcodecs ``BitRound``,
    1-23 for float32); None keeps every bit. Integer variables are never rounded."""

    def __post_init__(self) -> None:
        if self.compressor not in COMPRESSORS:
            raise ValueError(f"compressor must be one of {', '.join(COMPRESSORS)}, not {self.compressor!r}")
        low, high = (1, 22) if self.compressor == "zstd" else (1, 9)
        if self.compressor != "none" and not low <= self.level <= high:
            raise ValueError(f"{self.compressor} level must be in {low}..{high}, not {self.level}")
        if self.float_keepbits is not None and not 1 <= self.float_keepbits <= 23:
            raise ValueError(
                f"float_keepbits must be in 1..23 (float32 mantissa bits), not {self.float_keepbits}"
            )

    @property
    def lossless(self) -> bool:
        """True when decoded values equal the written ones bit for bit."""
        return self.float_keepbits is None

    def codecs(self, dtype: np.dtype) -> dict[str, tuple[Any, ...]]:
        """Zarr v3 ``filters`` and ``compressors`` for an array of ``dtype`` (``create_array`` keywords,
        also valid as xarray ``to_zarr`` encoding)."""
        from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

        filters: tuple[Any, ...] = ()
        if self.float_keepbits is not None and np.dtype(dtype).kind == "f":
            from zarr.codecs.numcodecs import BitRound

            with warnings.catch_warnings():  # "not in the Zarr v3 specification": known, opt-in
                warnings.simplefilter("ignore")
                filters = (BitRound(keepbits=self.float_keepbits),)
        if self.compressor == "zstd":  # zstd carries its own checksum
            return {"filters": filters, "compressors": (ZstdCodec(level=self.level, checksum=self.checksum),)}
        compressors: tuple[Any, ...] = ()
        if self.compressor != "none":
            shuffle = "shuffle" if self.shuffle else "noshuffle"
            cname = self.compressor.removeprefix("blosc-")
            compressors = (BloscCodec(cname=cname, clevel=self.level, shuffle=shuffle),)
        return {"filters": filters, "compressors": compressors + ((Crc32cCodec(),) if self.checksum else ())}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZarrEncoding:
        return cls(**dict(data))


#: What every eowatch store is written with unless a caller passes another encoding.
DEFAULT_ENCODING = ZarrEncoding()


def zarr_store(path: Location | str, read_only: bool = False) -> Any:
    """A Zarr store for a local folder (its path) or an object-storage URL (an ``FsspecStore``)."""
    path = location(path)
    if isinstance(path, ObjectPath):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(
            path.url, storage_options=path.config.storage_options(), read_only=read_only
        )
    return str(path)


def open_group(path: Location | str, mode: str = "r") -> zarr.Group:
    """Open the Zarr v3 group at a local path or ``s3://`` URL (``mode`` as in ``zarr.open_group``)."""
    return zarr.open_group(zarr_store(path, read_only=mode == "r"), mode=mode, zarr_format=3)


def grid_coords(grid: GridSpec) -> dict[str, np.ndarray]:
    """Pixel-centre coordinates (float64, CRS units) of a grid."""
    h, w = grid.shape
    minx, _, _, maxy = grid.bounds
    r = grid.resolution
    return {
        "y": maxy - r * (np.arange(h, dtype=np.float64) + 0.5),
        "x": minx + r * (np.arange(w, dtype=np.float64) + 0.5),
    }


def create_template(
    path: Location | str,
    grid: GridSpec,
    times: np.ndarray,
    variables: Mapping[str, tuple[np.dtype, Any, dict[str, Any]]],
    attrs: dict[str, Any],
    extra_coords: Mapping[str, tuple[str, np.ndarray]] | None = None,
    encoding: ZarrEncoding = DEFAULT_ENCODING,
) -> None:
    """Write the metadata of a (time, y, x) cube without any data chunk.

    Args:
        path: store location, a local folder or s3:// URL (must not hold a store yet).
        grid: spatial grid; chunks are ``(len(times), grid.chunk, grid.chunk)``.
        times: datetime64 values of the time axis.
        variables: name → (dtype, fill value, attributes).
        attrs: dataset attributes (JSON-serialisable; nested values are stored as JSON strings).
        extra_coords: name → (dim, values) for additional 1-D coordinates along ``time``.
        encoding: chunk encoding of the data variables; coordinates get its lossless part.
    """
    h, w = grid.shape
    t = len(times)
    chunks = (t, grid.chunk, grid.chunk)
    data_vars = {}
    var_encoding: dict[str, dict[str, Any]] = {}
    for name, (dtype, fill, var_attrs) in variables.items():
        data = da.full((t, h, w), fill, dtype=dtype, chunks=chunks)
        data_vars[name] = xr.Variable(("time", "y", "x"), data, attrs=dict(var_attrs))
        var_encoding[name] = {"chunks": chunks, "fill_value": fill, **encoding.codecs(np.dtype(dtype))}
    coords: dict[str, Any] = {"time": times, **grid_coords(grid)}
    for cname, (dim, values) in (extra_coords or {}).items():
        coords[cname] = (dim, values)
    ds = xr.Dataset(data_vars, coords=coords)
    ds.x.attrs.update(units="metre", standard_name="projection_x_coordinate", axis="X")
    ds.y.attrs.update(units="metre", standard_name="projection_y_coordinate", axis="Y")
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    for name in variables:
        ds[name].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs.update({k: _attr(v) for k, v in sorted(attrs.items())})
    var_encoding["time"] = {
        "units": "days since 1970-01-01",
        "calendar": "proleptic_gregorian",
        "dtype": "int64",
    }
    # Coordinates get the same checksummed compression (a damaged x/y/time would silently move the
    # data), never bit rounding.
    exact = replace(encoding, float_keepbits=None)
    for cname in ds.coords:
        var_encoding.setdefault(str(cname), {}).update(exact.codecs(ds[cname].dtype))
    # On object storage a template left half-written by a killed run (no root zarr.json, so never seen
    # as a store) is overwritten; a local template is created in the run's own work folder.
    mode = "w" if isinstance(location(path), ObjectPath) else "w-"
    store = zarr_store(path)
    ds.to_zarr(store, mode=mode, compute=False, zarr_format=3, encoding=var_encoding, consolidated=True)
    # xarray does not list the scalar grid-mapping variable among each variable's coordinates, so a plain
    # ``open_zarr`` would return it as a data variable and ``.rio.crs`` would be None; list it explicitly.
    group = zarr.open_group(store, mode="r+", zarr_format=3)
    for name in variables:
        coords_attr = str(group[name].attrs.get("coordinates", ""))
        group[name].attrs["coordinates"] = " ".join([*coords_attr.split(), "spatial_ref"])
    zarr.consolidate_metadata(store, zarr_format=3)


def _attr(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def write_region(
    path: Location | str, grid: GridSpec, row_slice: slice, col_slice: slice, arrays: dict[str, np.ndarray]
) -> None:
    """Write full-time-axis arrays ``(time, y, x)`` into one chunk-aligned window of an existing store."""
    group = open_group(path, mode="r+")
    for name, values in arrays.items():
        arr = group[name]
        if values.dtype != arr.dtype:
            raise TypeError(f"{name}: writing {values.dtype} into a {arr.dtype} array")
        arr[:, row_slice, col_slice] = values


def set_attrs(path: Location | str, attrs: dict[str, Any]) -> None:
    """Update dataset attributes (and the consolidated metadata that ``open_zarr`` reads).

    Both live in the root ``zarr.json``, which is rewritten whole (one PUT on object storage): a reader
    sees the old attributes or the new ones.
    """
    store = zarr_store(path)
    group = zarr.open_group(store, mode="r+", zarr_format=3)
    group.attrs.update({k: _attr(v) for k, v in sorted(attrs.items())})
    zarr.consolidate_metadata(store, zarr_format=3)


def read_attrs(path: Location | str) -> dict[str, Any]:
    """Dataset attributes of a store, or {} if there is no store (or no readable metadata) at ``path``.

    Raises:
        StorageError: object storage could not be reached (after the retries): an unreachable store must
            not look like an absent one, or a run would start over what it had already written.
    """
    path = location(path)
    try:
        return dict(open_group(path, mode="r").attrs)
    except (FileNotFoundError, KeyError, ValueError, TypeError, zarr.errors.BaseZarrError):
        return {}
    except Exception as exc:
        if not isinstance(path, ObjectPath):
            return {}
        raise StorageError(f"cannot read {path}/zarr.json: {redact_secrets(_first_line(exc))}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
