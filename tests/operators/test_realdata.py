"""Operators on real pixels from ../shared/data (Sentinel-2 L2A + SCL, Sentinel-1 GRD, Landsat TM pair).

Facts about the files that these tests rely on (checked by the tests themselves):
- the openEO/CDSE S2 cubes store DN = reflectance * 1e4 WITHOUT the +1000 offset of baseline >= 04.00
  (dark clear pixels have DN well below 1000), so they are converted with ``offset=0.0``;
- ``results__*.nc`` are NetCDF4/HDF5 (engine "h5netcdf"); ``resources__test_optical_cube.nc`` is NetCDF3
  (64-bit offset), which h5netcdf cannot open, so it is read with engine "scipy";
- the Landsat DNs of 2000 and 2003 differ by a global brightness shift, so CVA runs on per-band
  standardised images (raw-DN CVA ranks the reference pixels worse than chance).
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eowatch.models.metrics import roc_auc
from eowatch.operators import (
    assign_periods,
    change_vector_magnitude,
    composite_dataarray,
    cva_change_probability,
    db_to_linear,
    dn_to_db,
    dn_to_reflectance,
    month_periods,
    ndvi,
    otsu_threshold,
    period_composite,
    scl_clear_mask,
    standardize_bands,
    temporal_mean_db,
    threshold,
)

pytestmark = pytest.mark.realdata
CLOUD_CLASSES = [8, 9, 10]
APRIL_2023 = month_periods(date(2023, 4, 1), date(2023, 4, 30))


def _open(path: Path, engine: str) -> xr.Dataset:
    with xr.open_dataset(path, engine=engine) as ds:
        return ds.load()


@pytest.fixture(scope="module")
def s2(shared_data: Path) -> xr.Dataset:
    return _open(shared_data / "cubes/openeo_gfmap_s2_s1/results__cdse_sentinel2_l2a.nc", "h5netcdf")


@pytest.fixture(scope="module")
def s1(shared_data: Path) -> xr.Dataset:
    return _open(shared_data / "cubes/openeo_gfmap_s2_s1/results__cdse_sentinel1_grd.nc", "h5netcdf")


def _reflectance(ds: xr.Dataset, bands: list[str]) -> np.ndarray:
    """(time, band, y, x) float32 reflectance of the openEO cube (no baseline offset, see module doc)."""
    return np.stack([dn_to_reflectance(ds[f"S2-L2A-{b}"].values, offset=0.0) for b in bands], axis=1)


def test_s2_cube_has_no_baseline_offset(s2: xr.Dataset) -> None:
    assert s2["S2-L2A-B04"].dtype == np.uint16  # int16 + _Unsigned decoded by xarray
    clear_veg = s2["S2-L2A-SCL"].values == 4
    red = s2["S2-L2A-B04"].values[clear_veg]
    # With the +1000 offset, almost no clear vegetation pixel could be below DN 1000.
    assert np.median(red) < 600
    assert (dn_to_reflectance(red, offset=-0.1) < 0).mean() > 0.9


def test_s2_clear_mask_matches_scl_counts(s2: xr.Dataset) -> None:
    scl = s2["S2-L2A-SCL"].values
    clear = scl_clear_mask(scl)
    valid_classes = np.isin(scl, [2, 4, 5, 6, 7, 11])
    np.testing.assert_array_equal(clear, valid_classes)
    refl = _reflectance(s2, ["B04", "B08"])
    masked = np.where(clear[:, None], refl, np.float32(np.nan))
    index = assign_periods(s2.t.values, APRIL_2023)
    assert (index == 0).all()
    _, count = period_composite(masked, index, 1)
    np.testing.assert_array_equal(count[0], valid_classes.sum(axis=0))
    assert count.mean() / scl.shape[0] == pytest.approx(valid_classes.mean())
    # dilation can only remove clear pixels
    assert scl_clear_mask(scl, dilate_px=2).sum() <= clear.sum()


def test_s2_clear_composite_is_darker_than_all_obs_where_cloudy(s2: xr.Dataset) -> None:
    scl = s2["S2-L2A-SCL"].values
    refl = _reflectance(s2, ["B04", "B08"])
    masked = np.where(scl_clear_mask(scl)[:, None], refl, np.float32(np.nan))
    index = assign_periods(s2.t.values, APRIL_2023)
    clear_comp, count = period_composite(masked, index, 1)
    all_comp, _ = period_composite(refl, index, 1)
    assert clear_comp.dtype == np.float32
    cloudy = np.isin(scl, CLOUD_CLASSES).any(axis=0) & (count[0] > 0)
    assert cloudy.mean() > 0.5
    red_clear, red_all = clear_comp[0, 0][cloudy], all_comp[0, 0][cloudy]
    assert np.median(red_clear) < 0.08 < 0.2 < np.median(red_all)
    assert (red_clear < red_all).mean() > 0.95
    vi = ndvi(clear_comp[0, 0], clear_comp[0, 1])
    assert np.nanmin(vi) >= -1.0 and np.nanmax(vi) <= 1.0
    assert 0.4 < np.nanmedian(vi) < 0.95  # Belgian farmland in April


def test_s2_composite_dataarray_on_real_cube(s2: xr.Dataset) -> None:
    da = xr.concat([s2[f"S2-L2A-{b}"] for b in ("B04", "B08")], dim="bands").transpose("t", "bands", "y", "x")
    refl = dn_to_reflectance(da, offset=0.0).where(scl_clear_mask(s2["S2-L2A-SCL"]))
    out = composite_dataarray(refl, APRIL_2023)
    assert out.sizes == {"t": 1, "bands": 2, "y": 66, "x": 64} and out.dtype == np.float32
    assert out.t.values[0] == np.datetime64("2023-04-01")
    np.testing.assert_array_equal(out.x.values, s2.x.values)


def test_optical_cube_monthly_composites(shared_data: Path) -> None:
    ds = _open(shared_data / "cubes/openeo_gfmap_s2_s1/resources__test_optical_cube.nc", "scipy")
    scl = ds["S2-L2A-SCL"].values
    clear = scl_clear_mask(scl)
    refl = _reflectance(ds, ["B02", "B04", "B08"])
    periods = month_periods(date(2023, 10, 1), date(2023, 12, 31))
    index = assign_periods(ds.t.values, periods)
    assert (index >= 0).all() and np.bincount(index).tolist() == [6, 6, 7]
    masked = np.where(clear[:, None], refl, np.float32(np.nan))
    comp, count = period_composite(masked, index, len(periods))
    all_comp, _ = period_composite(refl, index, len(periods))
    assert int(count.sum()) == int(clear.sum())
    has_cloud = np.stack([np.isin(scl[index == p], CLOUD_CLASSES).any(axis=0) for p in range(3)]) & (
        count > 0
    )
    blue_clear, blue_all = comp[:, 0][has_cloud], all_comp[:, 0][has_cloud]
    assert np.median(blue_clear) < np.median(blue_all)
    vi = ndvi(comp[:, 1], comp[:, 2])
    assert np.isfinite(vi).any() and np.nanmin(vi) >= -1.0 and 0.2 < np.nanmedian(vi) < 0.95


def test_s1_decoding_range_and_nodata(s1: xr.Dataset) -> None:
    for pol in ("VV", "VH"):
        dn = s1[f"S1-SIGMA0-{pol}"].values
        assert dn.dtype == np.uint16
        db = dn_to_db(dn)
        assert db.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(db), np.isin(dn, [0, 65534, 65535]))
        low, median, high = np.nanpercentile(db, [1, 50, 99])
        assert -30.0 < low < median < high < 5.0
    assert np.nanmedian(dn_to_db(s1["S1-SIGMA0-VH"].values)) < np.nanmedian(
        dn_to_db(s1["S1-SIGMA0-VV"].values)
    )


def test_s1_temporal_mean_and_alignment_with_s2(s1: xr.Dataset, s2: xr.Dataset) -> None:
    db = dn_to_db(s1["S1-SIGMA0-VV"].values)
    index = assign_periods(s1.t.values, APRIL_2023)
    mean_db = temporal_mean_db(db_to_linear(db), index, 1)
    assert mean_db.shape == (1, 66, 64) and mean_db.dtype == np.float32
    assert -25.0 < np.nanmedian(mean_db) < 0.0
    # Jensen: the mean of linear power is never below the mean of the dB values.
    assert (mean_db[0] >= np.nanmean(db, axis=0) - 1e-4).all()
    np.testing.assert_array_equal(s1.x.values, s2.x.values)
    np.testing.assert_array_equal(s1.y.values, s2.y.values)
    assert s1["crs"].attrs["crs_wkt"] == s2["crs"].attrs["crs_wkt"]


def test_cva_separates_landsat_change_reference(shared_data: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    folder = shared_data / "change/landsat_taizhou"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BMP masks carry no georeferencing
        with rasterio.open(folder / "2000TM") as a, rasterio.open(folder / "2003TM") as b:
            assert a.crs == b.crs and a.transform == b.transform and a.crs.to_epsg() == 32651
            before, after = a.read(), b.read()
        with rasterio.open(folder / "change.bmp") as c, rasterio.open(folder / "unchanged.bmp") as u:
            changed, unchanged = c.read(1) == 255, u.read(1) == 255
    assert before.shape == (6, 400, 400) and not (changed & unchanged).any()
    magnitude = change_vector_magnitude(standardize_bands(before), standardize_bands(after))
    auc = roc_auc(magnitude[changed], magnitude[unchanged])
    raw = change_vector_magnitude(before, after)
    print(f"Taizhou CVA ROC AUC: standardised {auc:.3f}, raw DN {roc_auc(raw[changed], raw[unchanged]):.3f}")
    assert auc > 0.8
    thr = otsu_threshold(magnitude)
    mask, valid = threshold(magnitude, thr)
    assert valid.all() and mask[changed].mean() > 0.7 and mask[unchanged].mean() < 0.2
    prob = cva_change_probability(magnitude, thr, softness=0.5)
    assert prob[changed].mean() > 0.5 > prob[unchanged].mean()
