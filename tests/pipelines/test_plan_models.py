"""The run plan of a searched (not run) served archive: the stages each model adds, refusals with what
to change, renderings, and the ``eowatch plan`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from eowatch.errors import InputError
from eowatch.infra.cluster import ClusterConfig
from eowatch.pipelines import plan as planning
from eowatch.pipelines import stages
from eowatch.pipelines.artifacts import plan_markdown, plan_table, plan_text
from eowatch.pipelines.plan import ClusterResources, RunPlan, check_fits, plan_run
from tests.pipelines._plan_support import (
    CHUNK,
    CLUSTER,
    GIB,
    LANDCOVER_MODEL,
    MIB,
    ROOMY,
    SEMANTIC_MODEL,
    VHR_LANDCOVER_MODEL,
    VHR_MODEL,
    plan_params,
    stage_names,
    stage_of,
    vhr_landcover_shipped,
)

pytestmark = [pytest.mark.services]


@pytest.fixture(scope="module")
def planned(served_small_archive: Any, small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A prepared and searched run (items pinned) and its plan on ``CLUSTER``; no stage runs."""
    out = tmp_path_factory.mktemp("planned") / "out"
    run = stages.prepare_run(plan_params(served_small_archive, small_archive, out).to_config())
    stages.search_stage(run, info=lambda _m: None)
    items = json.loads(run.layout.items.read_text())
    return {"run": run, "items": items, "plan": plan_run(run, items, planning.cluster_resources(CLUSTER))}


def test_worker_peak_adds_runtime_threads_and_resident_memory(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    cube, change = plan.stages[0], plan.stages[-1]
    threads = plan.cluster.threads_per_worker
    assert cube.peak_bytes == cube.runtime_bytes + threads * cube.task_bytes
    for before, stage in zip(plan.stages, plan.stages[1:], strict=False):
        libraries = planning.TORCH_RUNTIME_BYTES if stage is change else 0
        assert stage.peak_bytes >= before.peak_bytes + libraries  # what a stage freed stays resident
        assert stage.peak_bytes >= stage.runtime_bytes + threads * stage.task_bytes
    assert plan.peak_worker_bytes == max(s.peak_bytes for s in plan.stages)
    assert plan.fits and check_fits(plan) is plan
    assert json.loads(json.dumps(plan.to_dict()))["fits"] is True


def _refusal(plan: RunPlan, usable: float, threads: int = 1) -> str:
    cluster = ClusterResources(workers=2, threads_per_worker=threads, memory_per_worker=int(usable / 0.8))
    refused = plan_run_again(plan, cluster)
    with pytest.raises(InputError) as err:
        check_fits(refused)
    return str(err.value)


def plan_run_again(plan: RunPlan, cluster: ClusterResources) -> RunPlan:
    """The same plan on another cluster (the headroom pinned to 0.8 for exact arithmetic)."""
    from dataclasses import replace

    peaks = planning._worker_peaks(
        [(s.name, s.runtime_bytes, s.task_bytes) for s in plan.stages], cluster.threads_per_worker
    )
    refit = [replace(s, peak_bytes=p) for s, p in zip(plan.stages, peaks, strict=True)]
    return replace(plan, cluster=cluster, stages=tuple(refit), headroom=0.8)


def test_a_crop_type_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a crop-type model the plan has its stage: the cube's chunks and tasks, no archive read."""
    from dataclasses import replace

    run = planned["run"]
    crop_run = replace(run, config=replace(run.config, crop_model="crop-type-ltae"))
    plan = plan_run(crop_run, planned["items"], planning.cluster_resources(CLUSTER))
    crops, change = stage_of(plan, "crop_type"), stage_of(plan, "change")
    assert [s.name for s in plan.stages] == [*stage_names(run), "crop_type"]
    assert (crops.chunks, crops.tasks) == (change.chunks, change.tasks)
    assert crops.acquisitions == len(run.spec.periods) and crops.seconds > 0
    assert plan.read_bytes == planned["plan"].read_bytes  # reads the cube, not the archive
    assert 0 < crops.task_bytes < change.task_bytes  # a per-pixel model over a chunk without halo
    assert crops.output_bytes == crops.chunks * run.spec.grid.chunk**2 * (1 + 4 * 5)


def test_a_vhr_change_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a VHR change model the plan has its stage after the change stage: the VHR grid's chunks, one
    per task, every VHR date read from the VHR cube (not the archive), two pairs written."""
    from dataclasses import replace

    run, items = planned["run"], planned["items"]
    vhr_run = replace(run, config=replace(run.config, vhr_change_model=VHR_MODEL))
    plan = plan_run(vhr_run, items, planning.cluster_resources(CLUSTER))
    stage, vhr = stage_of(plan, "vhr_change"), stage_of(plan, "vhr")
    assert [s.name for s in plan.stages] == [*stage_names(run), "vhr_change"]
    assert stage.chunks == stage.tasks == vhr.chunks == 4  # 1530 px at 1 m in 1024 px chunks
    assert stage.acquisitions == 3 and stage.chunk_px == (1152, 1152)  # 1024 px + 128 px halo
    assert stage.output_bytes == 4 * 1024**2 * 2 * (4 + 1)  # two pairs: float32 + uint8
    assert plan.read_bytes == planned["plan"].read_bytes and stage.seconds > 0
    assert stage.peak_bytes >= stage_of(plan, "change").peak_bytes  # what the change stage left resident


def test_a_vhr_change_model_is_checked_against_the_vhr_cube(planned: dict[str, Any]) -> None:
    """VHR imagery at 0.5 m makes a 0.5 m VHR cube: the 1 m model is refused before anything runs."""
    import copy
    from dataclasses import replace

    from eowatch.errors import ModelError

    run, items = planned["run"], copy.deepcopy(planned["items"])
    for item in (d for d in items if d["collection"] == "vhr-rgbn"):
        for asset in item["assets"].values():
            if asset.get("proj:transform"):
                asset["proj:transform"][0] = 0.5
    vhr_run = replace(run, config=replace(run.config, vhr_change_model=VHR_MODEL))
    with pytest.raises(ModelError, match=r"trained at 1 m but the cube is at 0\.5 m"):
        plan_run(vhr_run, items, planning.cluster_resources(CLUSTER))


def test_a_landcover_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a land-cover model the plan has its stage after the change stage: the cube's chunks read with
    the model's 56 px halo for every period (from the cube, not the archive), one uint8 map per period."""
    from dataclasses import replace

    run = planned["run"]
    lc_run = replace(run, config=replace(run.config, landcover_model=LANDCOVER_MODEL))
    plan = plan_run(lc_run, planned["items"], planning.cluster_resources(CLUSTER))
    stage, change = stage_of(plan, "landcover"), stage_of(plan, "change")
    assert [s.name for s in plan.stages] == [*stage_names(run), "landcover"]
    assert (stage.chunks, stage.tasks) == (change.chunks, change.tasks)
    assert stage.acquisitions == len(run.spec.periods) and stage.seconds > 0
    assert stage.chunk_px == (CHUNK + 56, CHUNK + 56)  # 2 x 2 chunks: the halo on one side of each
    assert stage.output_bytes == stage.chunks * CHUNK**2 * len(run.spec.periods)
    assert plan.read_bytes == planned["plan"].read_bytes
    assert stage.peak_bytes >= change.peak_bytes  # what the change stage left resident


def test_a_semantic_change_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a semantic change model the plan has its stage after land cover: the cube's chunks read with
    the model's halo for every period, three maps (float32 + 2 x uint8) per transition; a conditional model's
    task is larger (its condition model runs first, over a wider halo)."""
    from dataclasses import replace

    run = planned["run"]
    cluster = planning.cluster_resources(CLUSTER)
    sem_run = replace(run, config=replace(run.config, semantic_change_model=SEMANTIC_MODEL))
    plan = plan_run(sem_run, planned["items"], cluster)
    stage, change = stage_of(plan, "semantic_change"), stage_of(plan, "change")
    assert [s.name for s in plan.stages] == stage_names(sem_run) and "semantic_change" in stage_names(sem_run)
    assert (stage.chunks, stage.tasks) == (change.chunks, change.tasks)
    assert stage.acquisitions == len(run.spec.periods) and stage.seconds > 0
    assert stage.chunk_px == (CHUNK + 5, CHUNK + 5)  # 2 x 2 chunks, a 5 px halo on one side of each
    assert stage.output_bytes == stage.chunks * CHUNK**2 * 6 * (len(run.spec.periods) - 1)
    cond_run = replace(run, config=replace(run.config, semantic_change_model="siamese-s2s1-conditional"))
    cond = stage_of(plan_run(cond_run, planned["items"], cluster), "semantic_change")
    assert cond.chunk_px == (CHUNK + 10, CHUNK + 10) and cond.task_bytes > stage.task_bytes
    assert cond.seconds > stage.seconds


def test_a_landcover_model_task_grows_with_the_chunk(planned: dict[str, Any]) -> None:
    """The land-cover task's working set grows with the chunk (its halo window and engine windows)."""
    from dataclasses import replace

    run = planned["run"]
    tasks = []
    for chunk in (64, 128, 256):
        config = replace(run.config, chunk=chunk, landcover_model=LANDCOVER_MODEL)
        other = replace(run, config=config, spec=config.cube_spec())
        plan = plan_run(other, planned["items"], planning.cluster_resources(CLUSTER))
        tasks.append(stage_of(plan, "landcover").task_bytes)
    assert tasks == sorted(tasks) and len(set(tasks)) == 3


@pytest.mark.skipif(not vhr_landcover_shipped(), reason=f"{VHR_LANDCOVER_MODEL} weights are not shipped yet")
def test_a_vhr_landcover_model_adds_its_stage(planned: dict[str, Any]) -> None:
    """With a VHR land-cover model the plan has its stage last: the VHR grid's chunks, one per task, every
    VHR date classified from the VHR cube (not the archive), one uint8 map per date."""
    from dataclasses import replace

    run, items = planned["run"], planned["items"]
    vhr_run = replace(run, config=replace(run.config, vhr_landcover_model=VHR_LANDCOVER_MODEL))
    plan = plan_run(vhr_run, items, planning.cluster_resources(CLUSTER))
    stage, vhr = stage_of(plan, "vhr_landcover"), stage_of(plan, "vhr")
    assert [s.name for s in plan.stages] == [*stage_names(run), "vhr_landcover"]
    assert stage.chunks == stage.tasks == vhr.chunks == 4 and stage.acquisitions == 3
    assert stage.output_bytes == 4 * 1024**2 * 3  # three dates, uint8
    assert plan.read_bytes == planned["plan"].read_bytes and stage.seconds > 0


def test_runs_without_the_landcover_models_keep_their_tokens(planned: dict[str, Any]) -> None:
    """The new model fields stay out of a run's token (and provenance) unless set, so runs made before
    they existed are still recognised as finished; setting one makes another run."""
    from dataclasses import replace

    run = planned["run"]
    params = run.provenance["parameters"]
    assert not {"landcover_model", "vhr_landcover_model", "vhr_change_model"} & set(params)
    again = stages.prepare_run(run.config)
    assert again.token == run.token
    other = stages.prepare_run(replace(run.config, landcover_model=LANDCOVER_MODEL))
    assert other.token != run.token and other.provenance["parameters"]["landcover_model"] == LANDCOVER_MODEL


def test_new_weights_for_a_stage_model_make_another_run(
    planned: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stage model's weights are in the run's token and provenance: a retrained VHR change model
    makes another run, so its outputs are never taken for the finished outputs of the old weights."""
    from dataclasses import replace

    from eowatch.models import registry

    config = replace(planned["run"].config, vhr_change_model=VHR_MODEL)
    first = stages.prepare_run(config)
    shipped = registry.get(VHR_MODEL).card
    assert first.provenance["stage_models"]["vhr_change_model"] == {
        "name": VHR_MODEL,
        "version": shipped.version,
        "sha256": shipped.weights_sha256,
    }
    assert stages.prepare_run(config).token == first.token
    real_card_of = registry.card_of

    def retrained(name: str) -> Any:
        card = real_card_of(name)
        return replace(card, version="9.9.9", weights_sha256="0" * 64) if name == VHR_MODEL else card

    monkeypatch.setattr(registry, "card_of", retrained)
    assert stages.prepare_run(config).token != first.token


def test_a_tiny_worker_is_refused_with_what_to_change(planned: dict[str, Any]) -> None:
    message = _refusal(planned["plan"], usable=200 * MIB)
    assert message.startswith(f"run {planned['run'].token} does not fit the cluster")
    assert "change stage needs about" in message and "200 MiB" in message
    assert "of memory per worker" in message and "\n" not in message


def test_refusal_suggests_fewer_threads_when_one_fits(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    one = plan_run_again(plan, ClusterResources(2, 1, 16 * GIB)).peak_worker_bytes
    message = _refusal(plan, usable=one + MIB, threads=2)
    assert "fewer threads per worker (1)" in message


def test_refusal_suggests_a_chunk_size_that_fits(
    served_small_archive: Any, small_archive: Path, planned: dict[str, Any], tmp_path: Path
) -> None:
    items = planned["items"]
    coarse = stages.prepare_run(
        plan_params(served_small_archive, small_archive, tmp_path, chunk=256).to_config()
    )
    fine = stages.prepare_run(
        plan_params(served_small_archive, small_archive, tmp_path, chunk=128).to_config()
    )
    big, small = (plan_run(r, items, ROOMY) for r in (coarse, fine))
    assert small.peak_worker_bytes < big.peak_worker_bytes
    usable = (small.peak_worker_bytes + big.peak_worker_bytes) / 2
    assert "a smaller chunk size (--chunk 128" in _refusal(big, usable, threads=2)


def test_plan_renders_as_markdown_table_and_text(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    rows = plan_table(plan)
    assert [r["stage"] for r in rows] == [*stage_names(planned["run"]), "total"]
    assert rows[-1]["chunks"] == sum(r["chunks"] for r in rows[:-1]) == plan.chunks
    assert rows[-1]["worker peak (MiB)"] == round(plan.peak_worker_bytes / MIB, 1)
    markdown = plan_markdown(plan)
    assert markdown.startswith(f"# eowatch plan for run `{plan.run_token}`")
    assert "**fits:" in markdown and "| stage | chunks | tasks |" in markdown
    assert markdown.count("\n| ") == len(rows) + 1
    text = plan_text(plan)
    assert "Peak memory per worker: fits" in text and "benchmarks/results/latest.json" in text
    assert all(name in text for name in [*stage_names(planned["run"]), "total"])


def test_plan_stage_plans_the_pinned_items_and_refuses(planned: dict[str, Any]) -> None:
    run = planned["run"]
    plan = planning.plan_stage(run, ClusterConfig(n_workers=1, memory_limit="8GiB"), lambda _m: None)
    assert plan.fits and plan.chunks == planned["plan"].chunks
    seen: list[RunPlan] = []
    with pytest.raises(InputError, match="does not fit the cluster"):
        small = ClusterConfig(n_workers=1, memory_limit="300MiB")
        planning.plan_stage(run, small, lambda _m: None, on_plan=seen.append)
    assert len(seen) == 1 and not seen[0].fits  # published before the refusal


def _cli_args(served: Any, out: Path, *extra: str) -> list[str]:
    m = served.manifest
    return [
        "--stac-url",
        served.stac_url,
        "--bbox",
        ",".join(str(v) for v in m["aoi_bbox_lonlat"]),
        "--start",
        m["start"],
        "--end",
        m["end"],
        "--out",
        str(out),
        "--workers",
        "1",
        *extra,
    ]


def test_cli_prints_the_plan_and_exits_zero_when_it_fits(
    served_small_archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eowatch.plan_cli import main

    out = tmp_path / "new-out"
    assert main(_cli_args(served_small_archive, out, "--memory-limit", "8GiB")) == 0
    captured = capsys.readouterr()
    assert "Peak memory per worker: fits" in captured.out and "error:" not in captured.err
    assert not out.exists()  # planning writes nothing


def test_cli_refuses_a_run_that_does_not_fit(
    served_small_archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eowatch.plan_cli import add_plan_arguments, cmd_plan, main

    argv = _cli_args(served_small_archive, tmp_path / "out", "--memory-limit", "256MiB", "--json")
    assert main(argv) == InputError.exit_code
    captured = capsys.readouterr()
    assert json.loads(captured.out)["fits"] is False
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: run ") and "does not fit the cluster" in last and "MiB" in last
    parser = argparse.ArgumentParser()
    add_plan_arguments(parser)
    with pytest.raises(InputError):
        cmd_plan(parser.parse_args(argv))
