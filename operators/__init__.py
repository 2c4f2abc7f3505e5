"""eowatch.operators: pure array functions (numpy in, numpy out; xarray.DataArray where stated).

No I/O, no Dask client, no global configuration: the pipeline stages map these over chunks.
"""

from .change import (
    change_vector_magnitude,
    cva_change_probability,
    log_ratio_db,
    otsu_threshold,
    standardize_bands,
    threshold,
)
from .cloudmask import SCL_INVALID_DEFAULT, scl_clear_mask
from .composite import CompositeMethod, composite_dataarray, period_composite
from .indices import nbr, ndbi, ndvi, ndwi, normalized_difference
from .periods import Period, assign_periods, month_periods, period_starts
from .reflectance import dn_to_reflectance
from .sar import GFMAP_NODATA, db_to_linear, dn_to_db, linear_to_db, temporal_mean_db
from .tiling import TileWindow, apply_tiled, chunk_windows, pad_reflect, with_halo

__all__ = [
    "GFMAP_NODATA",
    "SCL_INVALID_DEFAULT",
    "CompositeMethod",
    "Period",
    "TileWindow",
    "apply_tiled",
    "assign_periods",
    "change_vector_magnitude",
    "chunk_windows",
    "composite_dataarray",
    "cva_change_probability",
    "db_to_linear",
    "dn_to_db",
    "dn_to_reflectance",
    "linear_to_db",
    "log_ratio_db",
    "month_periods",
    "nbr",
    "ndbi",
    "ndvi",
    "ndwi",
    "normalized_difference",
    "otsu_threshold",
    "pad_reflect",
    "period_composite",
    "period_starts",
    "scl_clear_mask",
    "standardize_bands",
    "temporal_mean_db",
    "threshold",
    "with_halo",
]
