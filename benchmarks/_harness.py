"""Shared benchmark plumbing: cached archives, memory sampling, ratios, hardware and the report files.

Every benchmark returns a plain ``dict`` (JSON-ready) with the same keys — ``name``, ``title``,
``params``, ``rows`` (one dict per method or size), ``ratios``, ``checks`` and ``notes`` — so one
renderer writes the whole markdown report. Ratios are always measured in one run on the same inputs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

#: Benchmark cache (archives, the stackstac install): gitignored, safe to delete.
CACHE = Path(__file__).resolve().parent / ".cache"
#: Commit-able results (small JSON + markdown).
RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def cached_archive(size_km: float, end: dt.date, seed: int = 5, start: dt.date = dt.date(2026, 4, 1)) -> Path:
    """A synthetic archive under ``benchmarks/.cache`` (generated once; a no-op when already there).

    VHR is left out: no benchmark reads it and it dominates generation time.
    """
    from eowatch.archive import ArchiveConfig, make_archive

    path = CACHE / f"archive-s{seed}-{size_km:g}km-{end:%Y%m%d}"
    config = ArchiveConfig(seed=seed, size_km=size_km, start=start, end=end, include_vhr=False, workers=2)
    make_archive(path, config)
    return path


def import_stackstac() -> Any | None:
    """``stackstac`` from the environment, else from ``benchmarks/.cache/site``; None when absent.

    stackstac 0.5.1 declares ``pandas<3`` while eowatch runs pandas 3, so it is installed beside the
    venv (``pip install --no-deps --target benchmarks/.cache/site stackstac``) instead of into it.
    """
    try:
        import stackstac
    except ImportError:
        site = CACHE / "site"
        if not site.is_dir():
            return None
        sys.path.append(str(site))
        try:
            import stackstac
        except ImportError:
            return None
    return stackstac


class MemorySampler:
    """Samples the resident set size (RSS) of some processes in a background thread.

    Use as a context manager; afterwards ``peak_total`` is the largest sum of RSS over the processes
    seen at one instant and ``peak_by_pid`` each process's own peak (bytes). Processes that exit are
    skipped.
    """

    def __init__(self, pids: Iterable[int], interval_s: float = 0.05) -> None:
        self.pids = list(dict.fromkeys(pids))
        self.interval_s = interval_s
        self.peak_total = 0
        self.peak_by_pid: dict[int, int] = dict.fromkeys(self.pids, 0)
        self.samples = 0
        self._procs = {pid: psutil.Process(pid) for pid in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        """Take one sample now."""
        total = 0
        for pid, proc in self._procs.items():
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self.peak_by_pid[pid] = max(self.peak_by_pid[pid], rss)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def cluster_pids(client: Any) -> list[int]:
    """Process ids of the Dask workers behind ``client`` (same machine only)."""
    return sorted(int(pid) for pid in client.run(os.getpid).values())


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    """``numerator / denominator`` rounded, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(float(numerator) / float(denominator), digits)


def best_of(times: Sequence[float]) -> float:
    """The fastest of repeated wall-clock times (the least disturbed by other load on the machine)."""
    return min(times)


class Stopwatch:
    """``with Stopwatch() as sw: ...``; then ``sw.seconds`` (wall clock) and ``sw.cpu_seconds``.

    ``cpu_seconds`` is this process's CPU time (user + system, all threads): on a shared machine it
    barely moves when other processes take the cores, where wall-clock time does.
    """

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0


def hardware() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, RAM, Python and the main libraries."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(("torch", "dask", "distributed", "odc-stac", "stackstac", "numpy", "zarr")),
    }


def _versions(names: Iterable[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if name == "stackstac" and import_stackstac() is not None:
                out[name] = getattr(import_stackstac(), "__version__", "cache")
    return out


def build_report(benchmarks: Sequence[dict[str, Any]], quick: bool) -> dict[str, Any]:
    """The whole run: hardware, time and every benchmark's result."""
    return {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "quick": quick,
        "hardware": hardware(),
        "benchmarks": list(benchmarks),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A GitHub markdown table over the union of the rows' keys (in first-seen order)."""
    if not rows:
        return []
    cols = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: hardware, then per benchmark its rows, ratios, checks and notes."""
    hw = report["hardware"]
    lines = [
        "# eowatch benchmarks",
        "",
        f"Run {report['created']}{' (quick)' if report.get('quick') else ''} on {hw['nproc']} cores "
        f"({hw['cpu_model']}), {hw['ram_gib']} GiB RAM, Python {hw['python']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in hw.get("versions", {}).items()) + ".",
        "",
    ]
    for bench in report["benchmarks"]:
        lines += [f"## {bench['title']}", ""]
        if bench.get("measured"):
            on = f" on {bench['measured_on']}" if bench.get("measured_on") else ""
            lines += [f"_Measured in an earlier run, {bench['measured']}{on}._", ""]
        if bench.get("error"):
            lines += [f"**Failed:** `{bench['error']}`", ""]
        if bench.get("params"):
            lines += ["Parameters: " + ", ".join(f"{k}={_cell(v)}" for k, v in bench["params"].items()), ""]
        lines += markdown_table(bench.get("rows", []))
        if bench.get("ratios"):
            lines += ["", "Ratios:", ""]
            lines += [f"- **{k}**: {_cell(v)}" for k, v in bench["ratios"].items()]
        if bench.get("checks"):
            lines += ["", "Checks:", ""]
            lines += [f"- {k}: {_cell(v)}" for k, v in bench["checks"].items()]
        if bench.get("notes"):
            lines += [""] + [f"> {note}" for note in bench["notes"]]
        lines.append("")
    return "\n".join(lines)


def merge_reports(earlier: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """``report`` plus the benchmarks of ``earlier`` that it lacks (a run of some benchmarks only).

    Carried-over benchmarks keep their place in ``earlier``'s order and say when, and on what, they
    were measured (``measured``, ``measured_on`` when the hardware differs); ``report``'s own
    benchmarks replace theirs.
    """
    fresh = {b["name"]: b for b in report["benchmarks"]}
    carried = {}
    for bench in earlier.get("benchmarks", []):
        if bench.get("name") in fresh or "name" not in bench:
            continue
        when = (
            bench.get("measured")
            or f"{earlier.get('created', '?')}{' (quick)' if earlier.get('quick') else ''}"
        )
        extra: dict[str, Any] = {"measured": when}
        hw, now = earlier.get("hardware", {}), report["hardware"]
        if bench.get("measured_on") or (hw.get("nproc"), hw.get("cpu_model")) != (
            now.get("nproc"),
            now.get("cpu_model"),
        ):
            extra["measured_on"] = (
                bench.get("measured_on") or f"{hw.get('nproc')} cores ({hw.get('cpu_model')})"
            )
        carried[bench["name"]] = {**bench, **extra}
    order = [b["name"] for b in earlier.get("benchmarks", []) if "name" in b]
    order += [name for name in fresh if name not in order]
    return {**report, "benchmarks": [fresh.get(name) or carried[name] for name in dict.fromkeys(order)]}


def write_report(
    report: dict[str, Any], out_dir: Path = RESULTS, stem: str = "latest", merge: bool = True
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; return both paths.

    With ``merge`` (the default) the benchmarks of an existing ``<stem>.json`` that ``report`` lacks are
    kept (``merge_reports``), so ``python -m benchmarks.run --only inference`` replaces the inference
    section and leaves the others' figures in place.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    if merge and json_path.is_file():
        try:
            earlier = json.loads(json_path.read_text())
        except (OSError, ValueError):
            earlier = None  # unreadable: replaced by this run
        if isinstance(earlier, dict):
            report = merge_reports(earlier, report)
    json_path.write_text(json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


def failed(name: str, title: str, exc: BaseException) -> dict[str, Any]:
    """A benchmark result recording that it failed (the run goes on with the others)."""
    return {"name": name, "title": title, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
