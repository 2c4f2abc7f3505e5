"""Pure parts of the run plan: cluster resources of each cluster kind, the bytes a read of one asset
touches, and the plan of real Planetary Computer items (no service)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines import plan as planning
from eowatch.pipelines import plan_reads, stages
from eowatch.pipelines.plan import plan_run
from tests.pipelines._plan_support import (
    GIB,
    ROOMY,
)


def test_cluster_resources_of_a_local_cluster() -> None:
    from distributed.system import MEMORY_LIMIT

    explicit = planning.cluster_resources(
        ClusterConfig(n_workers=2, threads_per_worker=3, memory_limit="1GiB")
    )
    assert (explicit.workers, explicit.threads, explicit.memory_per_worker) == (2, 6, GIB)
    auto = planning.cluster_resources(ClusterConfig(n_workers=4, memory_limit="auto"))
    assert auto.memory_per_worker <= MEMORY_LIMIT // 4 and auto.system_memory == MEMORY_LIMIT
    greedy = planning.cluster_resources(ClusterConfig(n_workers=2, memory_limit="100TiB"))
    assert greedy.memory_per_worker == MEMORY_LIMIT // 2


def test_cluster_resources_of_slurm_and_kubernetes(tmp_path: Path) -> None:
    from eowatch.infra.hpc.k8s import KubernetesConfig
    from eowatch.infra.hpc.slurm import SlurmConfig

    slurm = SlurmConfig(jobs=3, cores=8, processes=4, memory="16GiB")
    got = planning.cluster_resources(ClusterConfig(kind="slurm", slurm=slurm))
    assert (got.workers, got.threads_per_worker, got.memory_per_worker) == (12, 2, 4 * GIB)
    spec = {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": "plan-test"},
        "spec": {
            "scheduler": {"spec": {"containers": [{"name": "scheduler", "args": ["dask", "scheduler"]}]}},
            "worker": {
                "replicas": 5,
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "args": ["dask", "worker", "--nthreads", "2", "--memory-limit", "auto"],
                            "resources": {"limits": {"memory": "3Gi"}},
                        }
                    ]
                },
            },
        },
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    got = planning.cluster_resources(ClusterConfig(kind="kubernetes", kubernetes=KubernetesConfig(str(path))))
    assert (got.workers, got.threads_per_worker, got.memory_per_worker) == (5, 2, 3 * GIB)


def _item(**asset: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "collection": "c",
        "bbox": [4.42, 50.90, 4.46, 50.93],
        "properties": {"proj:code": "EPSG:32631"},
        "assets": {"b": asset},
    }


def test_read_bytes_count_touched_tiles_clipped_to_the_raster() -> None:
    from eowatch.pipelines.grid import GridSpec

    grid = GridSpec("EPSG:32631", 10.0, (600000, 5640000, 610240, 5650240), 256)
    raster = {"proj:shape": [1024, 1024], "proj:transform": [10, 0, 600000, 0, -10, 5650240]}
    notes: dict[str, set[str]] = {}
    geo = plan_reads.asset_raster(
        _item(**raster, **{"raster:bands": [{"data_type": "uint16"}]}), "b", grid, "uint8", notes
    )
    header, tile = plan_reads.COG_HEADER_BYTES, plan_reads.COG_BLOCK_PX**2 * 2
    inside_one_tile = (600010.0, 5650240.0 - 500, 600500.0, 5650230.0)
    assert plan_reads.read_bytes(geo, inside_one_tile, grid.crs) == header + tile
    across_four = (600000.0 + 5000, 5650240.0 - 5200, 600000.0 + 5200, 5650240.0 - 5000)
    assert plan_reads.read_bytes(geo, across_four, grid.crs) == header + 4 * tile
    assert plan_reads.read_bytes(geo, (0.0, 0.0, 10.0, 10.0), grid.crs) == 0
    sized = plan_reads.asset_raster(_item(**raster, **{"file:size": 1_000_000}), "b", grid, "uint16", notes)
    assert plan_reads.read_bytes(sized, inside_one_tile, grid.crs) == header + 250_000
    assert notes == {"c: no raster:bands data_type, assumed uint16": {"b"}}
    bare = plan_reads.asset_raster(_item(gsd=20), "b", grid, "uint16", notes)
    assert bare.transform.a == 20 and bare.crs == grid.crs
    assert notes["c: no proj:shape/proj:transform, footprint from the item bbox"] == {"b"}


def test_read_bytes_of_an_asset_in_another_crs() -> None:
    """A UTM 32N asset read for a UTM 31N grid: the window is reprojected before tiles are counted."""
    from eowatch.pipelines.grid import GridSpec

    grid = GridSpec("EPSG:32631", 10.0, (700000, 5640000, 702560, 5642560), 256)
    left, _, _, top = plan_reads.transformer("EPSG:32631", "EPSG:32632").transform_bounds(*grid.bounds)
    # the window starts 512-513 px right of and below the asset's corner: inside its second tile
    origin = (math.floor(left / 10) * 10 - 5120, math.ceil(top / 10) * 10 + 5120)
    item = _item(**{"proj:shape": [2048, 2048], "proj:transform": [10, 0, origin[0], 0, -10, origin[1]]})
    item["properties"] = {"proj:epsg": 32632}
    raster = plan_reads.asset_raster(item, "b", grid, "uint16", {})
    assert raster.crs == "EPSG:32632"
    read = plan_reads.read_bytes(raster, grid.bounds, grid.crs)
    assert read == plan_reads.COG_HEADER_BYTES + plan_reads.COG_BLOCK_PX**2 * 2


@pytest.mark.realdata
def test_plan_of_real_planetary_computer_items(shared_data: Path, tmp_path: Path) -> None:
    """13 real S2 L2A items of tile 35MNM (proj metadata, no data_type): an optical cube-only plan."""
    import datetime as dt

    from eowatch.pipelines.spec import MonitorConfig

    path = shared_data / "stac" / "odc_stac_items" / "site2-2020_jun_jul-35MNM.geojson"
    items = json.loads(path.read_text())["features"]
    lon = sum(f["bbox"][0] for f in items) / len(items) + 0.2
    lat = sum(f["bbox"][1] for f in items) / len(items) + 0.2
    config = MonitorConfig(
        stac_url="http://unused",
        bbox=(lon, lat, lon + 0.1, lat + 0.1),
        start=dt.date(2020, 6, 1),
        end=dt.date(2020, 7, 31),
        out=str(tmp_path),
        s1_collection=None,
    )
    run = stages.prepare_run(config, with_model=False)
    plan = plan_run(run, items, ROOMY)
    (cube,) = plan.stages  # no model: no change stage
    h, w = run.spec.grid.shape
    assert cube.chunks == math.ceil(h / 256) * math.ceil(w / 256) and cube.tasks == math.ceil(cube.chunks / 2)
    assert cube.acquisitions == len({f["properties"]["datetime"][:10] for f in items})
    # at least every pixel of every acquisition of the 7 assets once as uint16 (20 m ones a quarter)
    assert cube.read_bytes >= h * w * cube.acquisitions * 2 * (4 + 3 / 4)
    guessed = "sentinel-2-l2a: no raster:bands data_type, assumed uint16"
    assert plan.warnings == (f"{guessed} (assets B02, B03, B04, B08, B11, B12, SCL)",)
