"""Ground-truth rasters and event vectors of an archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio import features
from shapely.geometry import mapping, shape

from eowatch.archive.changes import truth_landcover
from eowatch.archive.cog import write_cog
from eowatch.archive.config import Grid, epoch_day, from_epoch_day
from eowatch.archive.stac import to_lonlat
from eowatch.archive.world import World
from eowatch.legend import CHANGE_TYPES, LANDCOVER

TRUTH_FILES = {
    "landcover_start": "truth/landcover_start.tif",
    "landcover_end": "truth/landcover_end.tif",
    "change_type": "truth/change_type.tif",
    "from_class": "truth/from_class.tif",
    "to_class": "truth/to_class.tif",
    "change_start": "truth/change_start.tif",
    "change_end": "truth/change_end.tif",
    "vhr_change_type": "truth/vhr_change_type.tif",
    "events": "truth/events.geojson",
    "legend": "truth/legend.json",
}


def write_json(path: Path, doc: Any) -> None:
    """Stable JSON (sorted keys, 1-space indent, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n")


def write_truth(world: World, root: Path) -> None:
    """Write every truth file of ``world`` under ``root`` (AOI grid, 10 m; VHR grid, 1 m)."""
    layout, plan = world.layout, world.plan
    win = layout.aoi.window_in(layout.world)
    cfg = world.config
    rasters = {
        "landcover_start": (truth_landcover(world.scene, plan, epoch_day(cfg.start)), 0),
        "landcover_end": (truth_landcover(world.scene, plan, epoch_day(cfg.end)), 0),
        "change_type": (plan.change_type, None),
        "from_class": (plan.from_class, None),
        "to_class": (plan.to_class, None),
        "change_start": (plan.change_start, None),
        "change_end": (plan.change_end, None),
    }
    for name, (arr, nodata) in rasters.items():
        write_cog(root / TRUTH_FILES[name], np.ascontiguousarray(arr[win]), layout.aoi, nodata, True)
    v10 = Grid.from_bbox(layout.vhr.bbox, 10.0).window_in(layout.world)
    vhr_ct = np.kron(plan.change_type[v10], np.ones((10, 10), np.uint8))
    write_cog(root / TRUTH_FILES["vhr_change_type"], vhr_ct, layout.vhr, None, True)
    write_json(root / TRUTH_FILES["events"], events_geojson(world))
    write_json(
        root / TRUTH_FILES["legend"],
        {
            "landcover": {str(k): v for k, v in LANDCOVER.items()},
            "change_types": {str(k): v for k, v in CHANGE_TYPES.items()},
            "dates": "change_start/change_end: int32 days since 1970-01-01, 0 = none; change_end is the "
            "flood recession date (first dry day) and 0 for permanent changes",
            "grid": {"crs": "EPSG:32631", "resolution_m": 10, "bbox": list(layout.aoi.bbox)},
        },
    )


def events_geojson(world: World) -> dict[str, Any]:
    """One Feature per planted event, geometry in EPSG:4326 lon/lat."""
    plan, grid = world.plan, world.layout.world
    feats = []
    for ev in plan.events:
        rs, cs = ev["window"]
        mask = plan.event_id[rs, cs] == ev["id"]
        sub = Grid(
            grid.minx + cs.start * grid.res,
            grid.maxy - rs.start * grid.res,
            grid.res,
            mask.shape[1],
            mask.shape[0],
        )
        polys = [
            shape(g)
            for g, v in features.shapes(mask.astype(np.uint8), mask=mask, transform=sub.transform)
            if v == 1
        ]
        geom = to_lonlat(shapely.union_all(polys))
        end = ev["end"]
        feats.append(
            {
                "type": "Feature",
                "id": ev["id"],
                "geometry": mapping(geom),
                "properties": {
                    "id": ev["id"],
                    "type": CHANGE_TYPES[ev["type"]],
                    "from_class": LANDCOVER[ev["from_class"]],
                    "to_class": LANDCOVER[ev["to_class"]],
                    "start": from_epoch_day(ev["start"]).isoformat(),
                    "end": from_epoch_day(end).isoformat() if end else None,
                    "completed": from_epoch_day(ev["completed"]).isoformat() if ev["completed"] else None,
                    "harvested": from_epoch_day(ev["harvested"]).isoformat() if ev.get("harvested") else None,
                    "area_m2": float(ev["pixels"] * grid.res * grid.res),
                    "in_vhr_area": _inside(ev["window"], world),
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def _inside(window: tuple[slice, slice], world: World) -> bool:
    v = Grid.from_bbox(world.layout.vhr.bbox, 10.0).window_in(world.layout.world)
    rs, cs = window
    return bool(
        rs.start >= v[0].start and rs.stop <= v[0].stop and cs.start >= v[1].start and cs.stop <= v[1].stop
    )
