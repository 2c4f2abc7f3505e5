"""The storage benchmark's helpers on tiny arrays, and the explicit Zarr encoding of eowatch's stores.

Behaviour only (sizes, round trips, error bounds, report rows); no wall-clock assertions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _storage_io as sio
from benchmarks import _storage_media as media
from benchmarks import bench_storage as bs
from eowatch.pipelines.zarr_store import DEFAULT_ENCODING, ZarrEncoding

CHUNKS = sio.Layout("(T,16,16) chunks", None, 16)
SHARDS = sio.Layout("32 px shards of (T,16,16)", None, 16, 32)


def _stores() -> list[sio.StoreData]:
    """A tiny cube and change cube (2 periods, 32 x 32 px, 16 px chunks) with NaNs and an empty chunk."""
    rng = np.random.default_rng(3)
    refl = (rng.integers(0, 4000, (2, 32, 32)) / 10000).astype(np.float32)
    refl[:, :4, :4] = np.nan
    count = rng.integers(0, 9, (2, 32, 32)).astype(np.uint16)
    prob = rng.random((2, 32, 32), dtype=np.float32)
    prob[:, 16:, 16:] = np.nan  # one chunk all fill value: never stored
    mask = (prob >= 0.5).astype(np.uint8)
    cube = sio.StoreData("cube", {"red": refl, "clear_count": count}, {"red": np.nan, "clear_count": 0}, 16)
    change = sio.StoreData(
        "change",
        {"change_probability": prob, "change_mask": mask},
        {"change_probability": np.nan, "change_mask": 0},
        16,
    )
    return [cube, change]


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_packing_round_trips_within_its_stated_error_and_keeps_nans(dtype: str) -> None:
    values = np.linspace(-0.1, 1.4, 1001, dtype=np.float32)
    values[1::97] = np.nan
    packing = sio.Packing.fit(values, dtype)  # type: ignore[arg-type]
    codes = packing.pack(values)
    assert codes.dtype == np.dtype(dtype)
    assert (codes == packing.fill).sum() == np.isnan(values).sum()
    back = packing.unpack(codes)
    assert np.array_equal(np.isnan(back), np.isnan(values))
    err = np.nanmax(np.abs(back.astype(np.float64) - values))
    assert err <= packing.max_abs_error + np.finfo(np.float32).eps * 2
    assert (
        np.nanmin(back) == pytest.approx(-0.1, abs=1e-7)
        and codes[np.isfinite(values)].max() == packing.fill - 1
    )


def test_packing_clips_out_of_range_values_and_handles_a_constant_array() -> None:
    packing = sio.Packing(0.0, 0.01, "uint8")
    assert packing.pack(np.array([-5.0, 0.5, 99.0, np.inf], np.float32)).tolist() == [0, 50, 254, 255]
    flat = sio.Packing.fit(np.full(4, 0.25, np.float32), "uint8")
    assert np.array_equal(flat.unpack(flat.pack(np.full(4, 0.25, np.float32))), np.full(4, 0.25, np.float32))


@pytest.mark.parametrize("layout", [CHUNKS, SHARDS], ids=["chunks", "shards"])
@pytest.mark.parametrize("region_px", [None, 16])
def test_lossless_variants_write_and_read_back_bit_identical(
    tmp_path: Path, layout: sio.Layout, region_px
) -> None:
    for variant in [v for v in sio.codec_variants() if not v.lossy]:
        for data in _stores():
            store = str(tmp_path / f"{variant.label}-{data.name}.zarr")
            packings = sio.create_store(store, data, variant, layout)
            sio.write_data(store, data, packings, region_px=region_px)
            assert packings == {}
            assert sio.identical(sio.read_store(store, list(data.arrays), packings), data.arrays), (
                variant.label
            )


def test_store_size_counts_chunk_objects_and_skips_all_fill_chunks(tmp_path: Path) -> None:
    change = _stores()[1]
    chunks, shards = tmp_path / "chunks.zarr", tmp_path / "shards.zarr"
    for path, layout in ((chunks, CHUNKS), (shards, SHARDS)):
        sio.write_data(str(path), change, sio.create_store(str(path), change, sio.NONE, layout))
    objects, stored = sio.tree_size(chunks)
    assert objects == 3 + 3  # the last chunk is all fill value in both (NaN, 0): zarr does not store it
    assert stored == 3 * 2 * 16 * 16 * 4 + 3 * 2 * 16 * 16  # uncompressed chunk bytes
    assert sio.tree_size(shards)[0] == 2  # one shard per variable
    payloads = media.chunk_payloads(change)
    assert [len(p) for p in payloads] == [3, 3] and sum(len(b) for batch in payloads for b in batch) == stored


def test_lossy_variants_report_errors_and_mask_flips(tmp_path: Path) -> None:
    rows = bs.codec_part(tmp_path, _stores(), reps=1, threshold=0.95)
    assert [(r["variant"], r["store"]) for r in rows] == [
        (v.label, s) for v in sio.codec_variants() for s in ("cube", "change")
    ]
    for row in rows:
        assert row["objects"] > 0 and row["x_smaller"] > 0 and row["write_MBps"] >= 0
        if not row["lossy"]:
            assert row["bit_identical"] is True
            continue
        assert set(row["max_abs_err"]) == (
            {"reflectance"} if row["store"] == "cube" else {"change_probability"}
        )
        assert all(np.isfinite(v) for v in row["max_abs_err"].values())
        if row["store"] == "change":
            assert set(row["mask_flips"]) == {"0.5", "0.95"}
    u16 = next(r for r in rows if r["variant"].startswith("uint16") and r["store"] == "change")
    u8 = next(r for r in rows if r["variant"].startswith("uint8") and r["store"] == "change")
    assert (
        u16["max_abs_err"]["change_probability"]
        <= u8["max_abs_err"]["change_probability"]
        <= 1 / 254 / 2 * 1.005  # half a step of 254 codes over [0, 1), rounded to 3 digits
    )
    checks = bs.storage_checks(rows, {}, {})
    assert checks["lossy options keep every NaN and only NaNs"] is True
    lossless = sum(not r["lossy"] for r in rows)
    assert checks["lossless codecs and layouts decode bit-identical"] == f"{lossless}/{lossless}"


def test_error_and_flip_accounting() -> None:
    cube = _stores()[0]
    decoded = {"red": cube.arrays["red"] + np.float32(0.001), "clear_count": cube.arrays["clear_count"]}
    assert sio.max_abs_errors(cube, decoded) == {"reflectance": pytest.approx(0.001, rel=1e-2)}
    decoded["red"] = np.nan_to_num(cube.arrays["red"])  # NaNs became zeros
    assert sio.max_abs_errors(cube, decoded) == {"reflectance": np.inf}
    ref = np.array([0.1, 0.5, 0.94, 0.96, np.nan], np.float32)
    got = np.array([0.1, 0.49, 0.95, 0.96, np.nan], np.float32)
    assert sio.mask_flips(ref, got, [0.5, 0.95]) == {"0.5": 1, "0.95": 1}


def test_rows_take_the_best_time_and_report_decoded_throughput() -> None:
    runs = [{"write_s": 2.0, "read_s": 0.5, "pixel_s": 0.01, "objects": 4, "stored": 5e5}, {"write_s": 1.0}]
    runs[1] |= {"read_s": 1.0, "pixel_s": 0.02, "objects": 9, "stored": 1.0}
    m = bs.best(runs)
    assert m == {"write_s": 1.0, "read_s": 0.5, "pixel_s": 0.01, "objects": 4, "stored": 5e5}
    row = bs.make_row("codec", "cube", "x", 2_000_000, m)
    assert row == {
        "part": "codec",
        "store": "cube",
        "variant": "x",
        "objects": 4,
        "stored_MB": 0.5,
        "x_smaller": 4.0,
        "write_MBps": 2,
        "read_MBps": 4,
        "pixel_ms": 10.0,
    }


def test_checksummed_default_turns_every_bit_flip_into_an_error(tmp_path: Path) -> None:
    block = _stores()[1].arrays["change_probability"][:, :16, :16]
    counts = media.corruption_check(tmp_path, block, np.nan, sio.DEFAULT, trials=20)
    assert counts["silent"] == 0 and counts["error"] + counts["harmless"] == 20 and counts["error"] > 0
    plain = media.corruption_check(tmp_path, block, np.nan, sio.ZARR_DEFAULT, trials=20)
    assert sum(plain.values()) == 20


def test_concurrent_region_writes_into_separate_chunks_all_land(tmp_path: Path) -> None:
    assert media.concurrent_regions(tmp_path, CHUNKS, t=2, px=16, trials=2) == [4, 4]
    assert all(1 <= k <= 4 for k in media.concurrent_regions(tmp_path, SHARDS, t=2, px=16, trials=2))


# ------------------------------------------------------------------------- eowatch's explicit encoding
def test_zarr_encoding_validates_and_round_trips() -> None:
    assert ZarrEncoding() == DEFAULT_ENCODING and DEFAULT_ENCODING.lossless
    assert ZarrEncoding.from_dict(DEFAULT_ENCODING.to_dict()) == DEFAULT_ENCODING
    for bad in (
        {"compressor": "gzip"},
        {"level": 0},
        {"level": 23},
        {"compressor": "blosc-lz4", "level": 10},
    ):
        with pytest.raises(ValueError):
            ZarrEncoding(**bad)
    with pytest.raises(ValueError, match="float_keepbits"):
        ZarrEncoding(float_keepbits=24)
    assert not ZarrEncoding(float_keepbits=7).lossless
    assert ZarrEncoding(float_keepbits=7).codecs(np.dtype("uint8"))["filters"] == ()
    assert [
        type(c).__name__ for c in ZarrEncoding(compressor="none").codecs(np.dtype("f4"))["compressors"]
    ] == ["Crc32cCodec"]


def test_create_template_writes_the_default_encoding_and_older_stores_still_open(tmp_path: Path) -> None:
    import xarray as xr
    import zarr

    from eowatch.pipelines.grid import GridSpec
    from eowatch.pipelines.zarr_store import create_template, write_region

    grid = GridSpec("EPSG:32631", 10.0, (600000.0, 5700000.0, 600320.0, 5700320.0), chunk=16)
    times = np.array(["2026-05-01", "2026-06-01"], dtype="datetime64[ns]")
    variables = {"p": (np.dtype("float32"), np.nan, {}), "m": (np.dtype("uint8"), 0, {})}
    values = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)
    new, old = tmp_path / "new.zarr", tmp_path / "old.zarr"
    create_template(new, grid, times, variables, {})
    # A store as eowatch wrote it before the encoding was explicit: zarr's own default codecs.
    ds = xr.Dataset({"p": (("time", "y", "x"), np.full((2, 32, 32), np.nan, np.float32))})
    ds.to_zarr(old, zarr_format=3, encoding={"p": {"chunks": (2, 16, 16)}}, consolidated=True)
    for store in (new, old):
        write_region(store, grid, slice(0, 16), slice(16, 32), {"p": values})
        assert np.array_equal(xr.open_zarr(store).p.values[:, :16, 16:], values)
    for name in ("p", "m", "x", "time"):  # data variables and coordinates alike
        codecs = json.loads((new / name / "zarr.json").read_text())["codecs"]
        assert codecs[-1] == {"name": "zstd", "configuration": {"level": 3, "checksum": True}}, name
    assert zarr.open_group(str(old), mode="r")["p"].compressors[0].checksum is False
