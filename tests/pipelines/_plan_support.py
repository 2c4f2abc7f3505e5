"""Constants and helpers shared by the run-plan tests (``test_plan*.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines import plan as planning
from eowatch.pipelines import stages
from eowatch.pipelines.params import MonitorParams
from eowatch.pipelines.plan import ClusterResources, RunPlan

CHUNK = 128  # four analysis chunks on the 2.56 km archive, four VHR chunks
READ_FACTOR = 4.0
MEMORY_FACTOR = 4.0
MIB = 1024**2
GIB = 1024**3
ROOMY = ClusterResources(workers=1, threads_per_worker=2, memory_per_worker=16 * GIB, cores=2)
CLUSTER = ClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="3GiB", dashboard=False)
VHR_MODEL = "siamese-vhr-change"
LANDCOVER_MODEL = "landcover-s2-unet"
SEMANTIC_MODEL = "siamese-s2s1-semantic"
VHR_LANDCOVER_MODEL = "landcover-vhr-unet"


def vhr_landcover_shipped() -> bool:
    from eowatch.models.registry import card_file_of

    return card_file_of(VHR_LANDCOVER_MODEL).is_file()


#: The VHR land-cover model joins the measured run once its weights are shipped.
MEASURED_MODELS: dict[str, Any] = {
    "vhr_change_model": VHR_MODEL,
    "landcover_model": LANDCOVER_MODEL,
    "vhr_landcover_model": VHR_LANDCOVER_MODEL if vhr_landcover_shipped() else None,
    "semantic_change_model": SEMANTIC_MODEL,
}


def plan_params(served: Any, archive: Path, out: Path, **extra: Any) -> MonitorParams:
    from eowatch.demo import archive_run_params

    base = archive_run_params(served, out, archive)
    return MonitorParams(**{**base.model_dump(), "chunk": CHUNK, **extra})


def stage_names(run: stages.Run) -> list[str]:
    """The stages a run has, in the flow's order (the VHR ones with VHR items, as on this archive)."""
    cfg = run.config
    optional = {
        "crop_type": cfg.crop_model,
        "landcover": cfg.landcover_model,
        "semantic_change": cfg.semantic_change_model,
        "vhr_change": cfg.vhr_change_model,
        "vhr_landcover": cfg.vhr_landcover_model,
    }
    names = ["cube", "vhr", "change"] if cfg.vhr_collection else ["cube", "change"]
    return [*names, *(name for name, model in optional.items() if model)]


def stage_of(plan: RunPlan, name: str) -> planning.StagePlan:
    return next(s for s in plan.stages if s.name == name)
