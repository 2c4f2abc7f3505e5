"""Prefect artifacts of a monitoring run: the plan before it, the summary, change table and quicklook after.

Builders are pure (a plan or a run summary in, markdown or table rows out); ``publish_*`` hand them to
Prefect and must run inside a flow or task run.

The quicklook is embedded in the markdown as a ``data:image/png;base64`` URI. Prefect 3.9's UI shows it:
the default React UI (``server/ui-v2``, ``lazy-markdown`` bundle) renders markdown with react-markdown,
whose ``urlTransform`` lets ``data:image/...`` through for ``<img src>``, and rehype-sanitize with
``data`` added to the allowed ``src`` protocols; the Vue UI (``server/ui``) turns an image token into an
``<img src>`` unchanged. ``create_image_artifact`` is no alternative: it stores a URL the browser must
fetch, and a run's quicklook is a file on the flow's machine (``file://`` is not loaded by an http page).
Both UIs showed such an image in headless Chromium (Prefect 3.9.1). The picture is downsampled to
``ARTIFACT_QUICKLOOK_MAX_PX`` on a 256-colour palette that keeps the change colours exact: the demo's
1.8 MB quicklook becomes a 137 kB PNG.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from typing import Any, Protocol

from PIL import Image

from eowatch.legend import CHANGE_COLOURS, CHANGE_TYPES
from eowatch.pipelines.artifact_sections import (
    crop_lines,
    landcover_lines,
    semantic_change_lines,
    vhr_change_lines,
    vhr_landcover_lines,
)
from eowatch.pipelines.plan import RunPlan, StagePlan, format_bytes

#: Longest side of the quicklook embedded in the summary artifact, pixels (both panels together).
ARTIFACT_QUICKLOOK_MAX_PX = 640
#: Largest embedded PNG, bytes; the picture is halved until it fits.
ARTIFACT_QUICKLOOK_MAX_BYTES = 256 * 1024
MIB = 1024**2


class Readable(Protocol):
    """A file to embed: a ``pathlib.Path`` or an ``infra.storage`` location (local or object storage)."""

    def exists(self) -> bool: ...

    def read_bytes(self) -> bytes: ...


# --- the plan ----------------------------------------------------------------------------------------


def _stage_row(plan: RunPlan, s: StagePlan) -> dict[str, Any]:
    return {
        "stage": s.name,
        "chunks": s.chunks,
        "tasks": s.tasks,
        "chunk window (px)": f"{s.chunk_px[0]}x{s.chunk_px[1]}",
        "time steps": s.acquisitions,
        "read (MiB)": round(s.read_bytes / MIB, 1),
        "written (MiB)": round(s.output_bytes / MIB, 1),
        "task memory (MiB)": round(s.task_bytes / MIB, 1),
        "worker peak (MiB)": round(s.peak_bytes / MIB, 1),
        "time (s)": s.seconds,
    }


def plan_table(plan: RunPlan) -> list[dict[str, Any]]:
    """One row per stage and a total row, for ``create_table_artifact``; sizes in MiB, time in seconds.

    "read" is COG bytes from the archive for cube and vhr, analysis-cube values for change; "written"
    is uncompressed Zarr chunks; the total's worker peak is the run's peak per worker.
    """
    rows = [_stage_row(plan, s) for s in plan.stages]
    rows.append(
        {
            "stage": "total",
            "chunks": plan.chunks,
            "tasks": plan.tasks,
            "chunk window (px)": "",
            "time steps": max((s.acquisitions for s in plan.stages), default=0),
            "read (MiB)": round(plan.read_bytes / MIB, 1),
            "written (MiB)": round(plan.output_bytes / MIB, 1),
            "task memory (MiB)": round(max((s.task_bytes for s in plan.stages), default=0) / MIB, 1),
            "worker peak (MiB)": round(plan.peak_worker_bytes / MIB, 1),
            "time (s)": plan.seconds,
        }
    )
    return rows


def _verdict(plan: RunPlan) -> str:
    peak, usable = format_bytes(plan.peak_worker_bytes), format_bytes(plan.usable_worker_bytes)
    if plan.fits:
        return f"fits: peak {peak} per worker of {usable} usable"
    return f"does NOT fit: peak {peak} per worker, {usable} usable"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _cluster_line(plan: RunPlan) -> str:
    c = plan.cluster
    cores = f", {c.cores} cores" if c.cores else ""
    return (
        f"{c.kind} cluster, {_count(c.workers, 'worker')} x {_count(c.threads_per_worker, 'thread')}{cores}, "
        f"{format_bytes(c.memory_per_worker)} per worker ({plan.headroom:.0%} usable before Dask pauses it)"
    )


def plan_markdown(plan: RunPlan) -> str:
    """Markdown for ``create_markdown_artifact``: the run, the cluster, the verdict and the stage table."""
    g = plan.grid
    items = ", ".join(f"{k} {v}" for k, v in sorted(plan.items.items()))
    lines = [
        f"# eowatch plan for run `{plan.run_token}`",
        "",
        f"- **{_verdict(plan)}**",
        f"- Area: {plan.area_km2:.2f} km² on {g['crs']} at {g['resolution']:g} m, chunks of {g['chunk']} px, "
        f"{plan.periods} periods; items: {items}",
        f"- Cluster: {_cluster_line(plan)}",
        f"- To read: {format_bytes(plan.read_bytes)} from the archive; to write: "
        f"{format_bytes(plan.output_bytes)} (uncompressed); {plan.chunks} chunks in {plan.tasks} Dask tasks",
        f"- Time: about {plan.seconds:.0f} s of chunk work (estimate from {plan.throughput_source})",
        "",
    ]
    rows = plan_table(plan)
    cols = list(rows[0])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    if plan.warnings:
        lines += ["", "Guessed metadata:", "", *[f"- {w}" for w in plan.warnings]]
    lines += [
        "",
        "Reads count the COG tiles each chunk touches at their uncompressed size (an upper bound); "
        "memory is a measured working-set factor per stage on top of the worker's runtime "
        "(see `pipelines/plan_stages.py`).",
    ]
    return "\n".join(lines)


def plan_text(plan: RunPlan) -> str:
    """Plain-text rendering for the command line (aligned columns, MiB/GiB)."""
    g = plan.grid
    head = [
        f"Plan for run {plan.run_token}: {plan.area_km2:.2f} km², {g['crs']} at {g['resolution']:g} m, "
        f"{plan.periods} periods, chunks of {g['chunk']} px",
        "Items: " + ", ".join(f"{k} {v}" for k, v in sorted(plan.items.items())),
        "Cluster: " + _cluster_line(plan),
        "",
    ]
    cols = [
        "stage",
        "chunks",
        "tasks",
        "window px",
        "steps",
        "read",
        "written",
        "task mem",
        "worker peak",
        "time",
    ]
    body = [
        [
            s.name,
            str(s.chunks),
            str(s.tasks),
            f"{s.chunk_px[0]}x{s.chunk_px[1]}",
            str(s.acquisitions),
            format_bytes(s.read_bytes),
            format_bytes(s.output_bytes),
            format_bytes(s.task_bytes),
            format_bytes(s.peak_bytes),
            f"{s.seconds:.0f} s",
        ]
        for s in plan.stages
    ]
    total = [str(plan.chunks), str(plan.tasks), "", "", format_bytes(plan.read_bytes)]
    total += [
        format_bytes(plan.output_bytes),
        "",
        format_bytes(plan.peak_worker_bytes),
        f"{plan.seconds:.0f} s",
    ]
    body.append(["total", *total])
    widths = [max(len(r[i]) for r in [cols, *body]) for i in range(len(cols))]
    table = [
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [cols, *body]
    ]
    tail = [
        "",
        f"Peak memory per worker: {_verdict(plan)}.",
        f"Time is an estimate from {plan.throughput_source}.",
        *[f"note: {w}" for w in plan.warnings],
    ]
    return "\n".join(head + table + tail)


# --- the finished run --------------------------------------------------------------------------------


def _pixel_km2(summary: Mapping[str, Any]) -> float:
    return float(summary["grid"]["resolution"]) ** 2 / 1e6


def change_table(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per change type: area (km²), pixels, share of the changed area and of the AOI (%).

    A pixel counts under the type of its first detected change (``publish.change_statistics``). Pixels
    are the summary's ``by_type_px`` when present, else area / pixel area (exact while areas are rounded
    to 1e-4 km² and pixels are at least 10 m).
    """
    found = summary["changes_found"]
    px_km2 = _pixel_km2(summary)
    changed = float(found["changed_km2"]) or math.inf
    area = float(summary["area_km2"]) or math.inf
    pixels = found.get("by_type_px") or {}
    return [
        {
            "change type": name,
            "area (km²)": km2,
            "pixels": int(pixels.get(name, round(km2 / px_km2))),
            "share of changed area (%)": round(100 * km2 / changed, 2),
            "share of AOI (%)": round(100 * km2 / area, 3),
        }
        for name, km2 in found["by_type_km2"].items()
    ]


def _indexed(picture: Image.Image) -> Image.Image:
    """``picture`` on a 256-colour palette that holds the change-type colours exactly (a true-colour
    PNG of a noisy scene is 3-4x larger): the legend's colours plus the image's own 251 most
    representative colours, every pixel mapped to its nearest palette colour without dithering."""
    fixed = [rgb for _, rgb in sorted(CHANGE_COLOURS.items())]
    own = picture.quantize(256 - len(fixed), method=Image.Quantize.FASTOCTREE).getpalette() or []
    palette = Image.new("P", (1, 1))
    palette.putpalette(own[: 3 * (256 - len(fixed))] + [v for rgb in fixed for v in rgb])
    return picture.quantize(palette=palette, dither=Image.Dither.NONE)


def quicklook_data_uri(png: Readable, max_px: int = ARTIFACT_QUICKLOOK_MAX_PX) -> str:
    """The quicklook as a ``data:image/png;base64,...`` URI: downsampled to ``max_px`` on its longer side
    (nearest neighbour), on a 256-colour palette that keeps the change-type colours exact, and halved
    until the PNG fits ``ARTIFACT_QUICKLOOK_MAX_BYTES``."""
    with Image.open(io.BytesIO(png.read_bytes())) as img:
        picture = img.convert("RGB")
    limit = max_px
    while True:
        scale = min(1.0, limit / max(picture.size))
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        buf = io.BytesIO()
        _indexed(picture.resize(size, Image.Resampling.NEAREST)).save(buf, format="PNG", optimize=True)
        if buf.tell() <= ARTIFACT_QUICKLOOK_MAX_BYTES or limit <= 32:
            return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        limit //= 2


def _legend() -> str:
    names = {1: "red", 2: "orange", 3: "blue", 4: "yellow"}
    return ", ".join(
        f"{CHANGE_TYPES[code].replace('_', ' ')} {names.get(code, str(rgb))}"
        for code, rgb in CHANGE_COLOURS.items()
        if code
    )


def run_markdown(
    summary: Mapping[str, Any],
    quicklook: Readable | None = None,
    vhr_quicklook: Readable | None = None,
    landcover_quicklook: Readable | None = None,
) -> str:
    """Markdown for the run's summary artifact: area, changes per type, evaluation, timings, model
    versions, outputs, and the quicklook embedded when ``quicklook`` (the PNG) is given (and the VHR
    change and land-cover quicklooks when ``vhr_quicklook`` and ``landcover_quicklook`` are)."""
    found, grid, model = summary["changes_found"], summary["grid"], summary.get("model") or {}
    rows = change_table(summary)
    lines = [
        f"# eowatch monitoring run `{summary['run_token']}`",
        "",
        f"- Area processed: **{summary['area_km2']:.2f} km²** on {grid['crs']} at {grid['resolution']:g} m, "
        f"{len(summary['periods'])} periods ({summary['periods'][0][0]} to {summary['periods'][-1][1]}, "
        "end exclusive)",
        "- Items: " + ", ".join(f"{k} {v}" for k, v in summary.get("items", {}).items()),
        f"- Changed (model): **{found['changed_km2']:.4f} km²**; CVA baseline: "
        f"{found['cva_baseline_changed_km2']:.4f} km²",
        f"- Model: `{model.get('name', '?')}` v{model.get('version', '?')} (weights sha256 "
        f"`{str(model.get('sha256', '?'))[:12]}`)",
        f"- Change cube: `{summary['output']['change_cube']}`",
        "",
        "| change type | area (km²) | pixels | share of changed (%) | share of AOI (%) |",
        "|---|---|---|---|---|",
        *[
            f"| {r['change type']} | {r['area (km²)']:.4f} | {r['pixels']} | "
            f"{r['share of changed area (%)']:.1f} | {r['share of AOI (%)']:.2f} |"
            for r in rows
        ],
        "",
        "| period | changed (km²) |",
        "|---|---|",
        *[f"| {p} | {km2:.4f} |" for p, km2 in found.get("by_period_km2", {}).items()],
    ]
    ev = summary.get("evaluation")
    if ev:
        m, c = ev["model"]["per_pixel"], ev["cva_baseline"]["per_pixel"]
        lines += [
            "",
            f"Against planted truth ({ev['scope']}):",
            "",
            "| method | precision | recall | F1 |",
            "|---|---|---|---|",
            f"| {model.get('name', 'model')} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |",
            f"| CVA baseline | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} |",
        ]
    lines += [
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in summary.get("timings_s", {}).items()],
    ]
    lines += crop_lines(summary)
    lines += vhr_change_lines(summary)
    lines += landcover_lines(summary)
    lines += vhr_landcover_lines(summary)
    lines += semantic_change_lines(summary)
    lines += worker_phase_lines(summary)
    if quicklook is not None and quicklook.exists():
        lines += [
            "",
            "Quicklook: true colour of the last period (left), change types of the run "
            f"(right: {_legend()}).",
            "",
            f"![quicklook of run {summary['run_token']}]({quicklook_data_uri(quicklook)})",
        ]
    if vhr_quicklook is not None and vhr_quicklook.exists():
        lines += [
            "",
            "VHR change: true colour of the last VHR date (left), pixels changed in any pair (right).",
            "",
            f"![VHR change quicklook of run {summary['run_token']}]({quicklook_data_uri(vhr_quicklook)})",
        ]
    if landcover_quicklook is not None and landcover_quicklook.exists():
        uri = quicklook_data_uri(landcover_quicklook)
        lines += [
            "",
            "Land cover: true colour of the last period (left), its land-cover map (right).",
            "",
            f"![land-cover quicklook of run {summary['run_token']}]({uri})",
        ]
    return "\n".join(lines)


def worker_phase_lines(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the workers' seconds per phase (read, composite, infer, write) and the slowest one.

    Empty for summaries written before phases were recorded (or by a run with no chunk to compute).
    """
    by_phase = (summary.get("worker_seconds") or {}).get("by_phase") or {}
    total = sum(by_phase.values())
    if total <= 0:
        return []
    slowest = max(by_phase, key=by_phase.__getitem__)
    return [
        "",
        f"Worker time per phase, summed over chunk tasks (slowest: **{slowest}**):",
        "",
        "| phase | worker seconds | share (%) |",
        "|---|---|---|",
        *[f"| {k} | {v:.1f} | {100 * v / total:.0f} |" for k, v in by_phase.items()],
    ]


# --- handing them to Prefect -------------------------------------------------------------------------


def publish_plan_artifacts(plan: RunPlan) -> None:
    """The plan as a markdown and a table artifact of the current flow or task run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(plan_markdown(plan), key="monitor-plan", description="eowatch run plan")
    create_table_artifact(plan_table(plan), key="monitor-plan-stages", description="eowatch plan per stage")


def publish_run_artifacts(
    summary: Mapping[str, Any],
    quicklook: Readable | None = None,
    vhr_quicklook: Readable | None = None,
    landcover_quicklook: Readable | None = None,
) -> None:
    """The run summary (quicklooks embedded) and the change table as artifacts of the current run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(
        run_markdown(summary, quicklook, vhr_quicklook, landcover_quicklook),
        key="monitor-summary",
        description="eowatch monitoring run summary",
    )
    create_table_artifact(
        change_table(summary), key="monitor-changes", description="eowatch changed area per change type"
    )
