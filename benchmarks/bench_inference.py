"""Change inference: eowatch's engine path vs a naive per-window torch loop, same cube, same model.

Engine: exactly what the flow's ``infer_region`` runs for the model: per chunk the halo window of all
periods through ``pipelines.inference.change_probabilities`` (the tiled engine of ``models.engine``:
each period encoded once, fused conv + GELU, inference mode, channels-last), once in its default
precision and once with the opt-in bf16. Naive: 64 x 64 windows without halo, one at a time, one
forward pass per window and transition, plain float32 without ``inference_mode``. All read the same
in-memory cube, so the ratios measure model execution; the whole ``infer_region`` (Zarr reads, CVA and
SAR baselines included) is timed beside them, and every output is compared with whole-image inference.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import CACHE, Stopwatch, best_of, cached_archive, ratio

TITLE = "2. Change inference: engine vs naive per-window loop"
NAIVE_WINDOW = 64


def ensure_cube(size_km: float = 5.12, end: dt.date = dt.date(2026, 6, 30)) -> tuple[Path, Any]:
    """The full (S2 + S1) analysis cube of a cached archive, built once under ``benchmarks/.cache``.

    Returns the cube path and its ``CubeSpec``.
    """
    from eowatch.demo import archive_run_params, served_archive
    from eowatch.infra.cluster import ClusterConfig, cluster_client
    from eowatch.pipelines.stages import cube_stage_run, prepare_run, search_stage

    archive = cached_archive(size_km, end)
    out = CACHE / f"run-{archive.name}"
    with served_archive(archive) as served:
        config = archive_run_params(served, out, vhr_collection=None).to_config()
        run = prepare_run(config)
        if run.layout.cube.exists():
            return run.layout.cube, run.spec
        search_stage(run, info=lambda _m: None)
        with cluster_client(ClusterConfig(n_workers=2, dashboard=False)) as client:
            return cube_stage_run(run, client, info=lambda _m: None), run.spec


def load_cube(cube: Path, names: tuple[str, ...]) -> np.ndarray:
    """The model's input variables of a cube as ``(period, channel, y, x)`` float32."""
    import zarr

    group = zarr.open_group(str(cube), mode="r", zarr_format=3)
    return np.stack([np.asarray(group[n][:], dtype=np.float32) for n in names], axis=1)


def engine_probs(
    model: Any, x: np.ndarray, chunk: int, halo: int, precision: str = "auto", days: np.ndarray | None = None
) -> np.ndarray:
    """eowatch's path, exactly as ``infer_region`` runs it: per chunk the halo window of every period,
    ``pipelines.inference.change_probabilities`` over it (the tiled engine), the chunk's result.

    Returns ``(transition, class, y, x)`` float32.
    """
    from eowatch.pipelines.inference import change_probabilities

    n_p, _, h, w = x.shape
    out = np.empty((n_p - 1, model.card.architecture_args["n_classes"], h, w), np.float32)
    for y0 in range(0, h, chunk):
        for x0 in range(0, w, chunk):
            y1, x1 = min(y0 + chunk, h), min(x0 + chunk, w)
            ry0, rx0 = max(y0 - halo, 0), max(x0 - halo, 0)
            win = x[:, :, ry0 : min(y1 + halo, h), rx0 : min(x1 + halo, w)]
            crop = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
            out[:, :, y0:y1, x0:x1] = change_probabilities(model, win, crop, precision, days)  # type: ignore[arg-type]
    return out


def whole_image_probs(model: Any, x: np.ndarray, days: np.ndarray | None = None) -> np.ndarray:
    """Reference: the plain module's ``forward`` on each transition of the whole image in one piece."""
    import torch

    from eowatch.models.predict import preprocess, with_season

    z = torch.from_numpy(with_season(model, preprocess(model.card, x), days))
    with torch.inference_mode():
        logits = [model.module(z[t - 1 : t], z[t : t + 1]) for t in range(1, len(z))]
    return torch.cat(logits).softmax(dim=1).numpy()


def naive_probs(
    model: Any, x: np.ndarray, window: int = NAIVE_WINDOW, days: np.ndarray | None = None
) -> np.ndarray:
    """The loop people write first: one window, one transition, one forward pass at a time.

    Returns ``(transition, class, y, x)`` float32; pixels near window edges see zero padding.
    """
    import torch

    from eowatch.models.predict import preprocess, with_season

    n_p, _, h, w = x.shape
    out = np.empty((n_p - 1, model.card.architecture_args["n_classes"], h, w), np.float32)
    for y0 in range(0, h, window):
        for x0 in range(0, w, window):
            for t in range(n_p - 1):
                ys, xs = slice(y0, y0 + window), slice(x0, x0 + window)
                pair = preprocess(model.card, x[t : t + 2, :, ys, xs])
                pair = torch.from_numpy(with_season(model, pair, None if days is None else days[t : t + 2]))
                logits = model.module(pair[0:1].float(), pair[1:2].float())
                out[t, :, ys, xs] = logits.softmax(dim=1).detach().numpy()[0]
    return out


def interior_mask(shape: tuple[int, int], window: int, margin: int) -> np.ndarray:
    """True on pixels at least ``margin`` px inside every ``window`` tile (and inside the image)."""
    h, w = shape
    iy = np.arange(h) % window
    ix = np.arange(w) % window
    ok_y = (iy >= margin) & (iy < window - margin) & (np.arange(h) >= margin) & (np.arange(h) < h - margin)
    ok_x = (ix >= margin) & (ix < window - margin) & (np.arange(w) >= margin) & (np.arange(w) < w - margin)
    return ok_y[:, None] & ok_x[None, :]


def compare(engine: np.ndarray, naive: np.ndarray, window: int, margin: int) -> dict[str, float]:
    """Max |difference| of probabilities inside the naive windows, and the share of seam pixels."""
    inside = interior_mask(engine.shape[-2:], window, margin)
    diff = np.abs(engine - naive)
    return {
        "max_abs_diff_inside_windows": float(diff[..., inside].max()),
        "share_px_differing_gt_0.01_anywhere": round(float((diff.max(axis=(0, 1)) > 0.01).mean()), 4),
    }


def mask_agreement(reference: np.ndarray, other: np.ndarray, threshold: float) -> dict[str, float]:
    """How far ``other``'s probabilities, change mask and change type are from ``reference``'s.

    Mask: ``1 - p(no change) >= threshold``; type: most likely change class where changed (as
    ``infer_region`` writes them). Counts are pixels x transitions.
    """
    masks = [(1.0 - p[:, 0]) >= threshold for p in (reference, other)]
    types = [(p[:, 1:].argmax(axis=1) + 1) * m for p, m in zip((reference, other), masks, strict=True)]
    return {
        "max_abs_diff": float(np.abs(reference - other).max()),
        "mask_px_differing": int((masks[0] != masks[1]).sum()),
        "mask_px_changed_in_reference": int(masks[0].sum()),
        "share_mask_px_differing": float((masks[0] != masks[1]).mean()),
        "type_px_differing": int((types[0] != types[1]).sum()),
    }


def run_comparison(
    model: Any, x: np.ndarray, chunk: int, repeats: int, days: np.ndarray | None = None
) -> dict[str, Any]:
    """Time the engine (default and opt-in bf16) and the naive loop ``repeats`` times, interleaved, on
    ``x``, and compare their outputs with each other and with whole-image inference (the testable core).
    ``days``: the periods' middle days, for a model that reads the season."""
    halo = model.card.receptive_field_px // 2 + 1  # what the flow reads (stages.prepare_change)
    margin = model.card.receptive_field_px // 2
    warm = x[:, :, : 2 * NAIVE_WINDOW, : 2 * NAIVE_WINDOW]  # first calls pay for oneDNN kernel setup
    paths = {
        "engine": lambda xx: engine_probs(model, xx, chunk, halo, days=days),
        "engine bf16 (opt-in)": lambda xx: engine_probs(model, xx, chunk, halo, "bfloat16", days),
        "naive": lambda xx: naive_probs(model, xx, days=days),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    outputs: dict[str, np.ndarray] = {}
    for fn in paths.values():
        fn(warm)
    for _ in range(repeats):
        for name, fn in paths.items():
            with Stopwatch() as sw:
                outputs[name] = fn(x)
            times[name].append(sw.seconds)
            cpu[name].append(sw.cpu_seconds)
    px = (x.shape[0] - 1) * x.shape[2] * x.shape[3]
    rows = [
        {
            "method": name,
            "best_s": round(best_of(ts), 3),
            "all_s": [round(t, 3) for t in ts],
            "best_cpu_s": round(best_of(cpu[name]), 3),
            "Mpx_per_s": round(px / best_of(ts) / 1e6, 3),
        }
        for name, ts in times.items()
    ]
    naive, naive_cpu = best_of(times["naive"]), best_of(cpu["naive"])
    whole = whole_image_probs(model, x, days)
    bf16 = mask_agreement(outputs["engine"], outputs["engine bf16 (opt-in)"], model.card.decision_threshold)
    return {
        "rows": rows,
        "ratios": {
            "speed engine / naive (target >= 2)": ratio(naive, best_of(times["engine"])),
            "speed engine bf16 (opt-in) / naive": ratio(naive, best_of(times["engine bf16 (opt-in)"])),
            "CPU time naive / engine": ratio(naive_cpu, best_of(cpu["engine"])),
            "CPU time naive / engine bf16 (opt-in)": ratio(naive_cpu, best_of(cpu["engine bf16 (opt-in)"])),
        },
        "checks": {
            **compare(outputs["engine"], outputs["naive"], NAIVE_WINDOW, margin),
            "engine_vs_whole_image_max_abs_diff": float(np.abs(outputs["engine"] - whole).max()),
            **{f"bf16_vs_float32_{k}": v for k, v in bf16.items()},
        },
    }


def _time_infer_region(cube: Path, spec: Any, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of eowatch's whole ``infer_region`` over every chunk (Zarr
    reads, CVA and SAR baselines included)."""
    import zarr

    from eowatch.models.registry import get
    from eowatch.pipelines.inference import infer_region
    from eowatch.pipelines.spec import ChangeSpec

    change = ChangeSpec()
    halo = get(change.model).card.receptive_field_px // 2 + 1
    group = zarr.open_group(str(cube), mode="r", zarr_format=3)
    times, cpu = [], []
    for _ in range(repeats):
        with Stopwatch() as sw:
            for key in spec.grid.chunks():
                infer_region(key, spec, change, group, halo)
        times.append(sw.seconds)
        cpu.append(sw.cpu_seconds)
    return best_of(times), best_of(cpu)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark on the 5.12 km cube; ``quick`` does one repetition instead of five."""
    import torch

    from eowatch.models.engine import default_config
    from eowatch.models.registry import get

    repeats = 1 if quick else 5  # best of 5: the CPU is shared, the fastest run is the least disturbed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a Dask worker uses (InferenceInputs.torch_threads); steadier timings
    try:
        cube, spec = ensure_cube()
        model = get("siamese-s2s1-change")
        x = load_cube(cube, tuple(model.card.bands))
        days = np.array(spec.middle_days) if model.module.season_channels else None
        result = run_comparison(model, x, spec.grid.chunk, repeats, days)
        full, full_cpu = _time_infer_region(cube, spec, repeats)
    finally:
        torch.set_num_threads(threads)
    px = (x.shape[0] - 1) * x.shape[2] * x.shape[3]
    result["rows"].append(
        {
            "method": "engine infer_region (Zarr + CVA + SAR)",
            "best_s": round(full, 3),
            "best_cpu_s": round(full_cpu, 3),
            "Mpx_per_s": round(px / full / 1e6, 3),
        }
    )
    config = default_config(torch.device("cpu"), model.module.receptive_field // 2)
    return {
        "name": "inference",
        "title": TITLE,
        "params": {
            "cube": f"{x.shape[3]}x{x.shape[2]} px, {x.shape[0]} periods, {x.shape[1]} channels",
            "model": f"{model.card.name} {model.card.version}",
            "chunk": spec.grid.chunk,
            "engine": f"cores <= {config.tile} px, halo {config.halo} px, {config.batch_windows} window "
            "per batch, channels-last, fused conv+GELU, each period encoded once",
            "naive_window": NAIVE_WINDOW,
            "torch_threads": 1,
            "cpu_bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "repeats": repeats,
        },
        **result,
        "notes": [
            "Mpx/s counts output pixels x transitions; one untimed warm-up pass of each path precedes "
            "timing; the paths take turns in every repetition. Speed ratios use the best wall-clock time; "
            "the CPU-time ratios (this process's user + system time) cross-check them: the CPU is shared, "
            "and other load slows the paths unequally (the naive loop lives off cache-resident activations).",
            "engine = pipelines.inference.change_probabilities per chunk, the model part of infer_region: "
            "float32 on CPU by default; 'engine bf16 (opt-in)' is the same call with precision='bfloat16'.",
            "In float32 every path is compute-bound (oneDNN convolutions near the core's FMA peak): the "
            "engine saves by encoding each period once (3 encoder passes instead of 4 for 3 periods) and "
            "fusing GELU into the convolutions, and pays for 5 % halo pixels. bf16 "
            "doubles the arithmetic rate on avx512_bf16 but moves probabilities (bf16_vs_float32 checks).",
            "Differences outside the naive windows' interiors are the naive loop's seams (zero padding at "
            "window edges); the engine's halo makes chunked output equal whole-image inference "
            "(engine_vs_whole_image_max_abs_diff).",
        ],
    }
