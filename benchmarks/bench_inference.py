"""Change inference: eowatch's engine path vs a naive per-window torch loop, same cube, same model.

Engine: per 256 px chunk, a window with the model's halo, every transition of the chunk in one
``predict_change_batch`` call (inference mode, channels-last), cropped to the chunk. Naive: 64 x 64
windows without halo, one at a time, one forward pass per window and transition, plain float32
without ``inference_mode``. Both read the same in-memory cube, so the ratio measures model execution;
the engine's whole ``infer_region`` (Zarr reads, CVA and SAR baselines included) is timed beside it.
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


def engine_probs(model: Any, x: np.ndarray, chunk: int, halo: int) -> np.ndarray:
    """eowatch's path: per chunk a halo window, all transitions as one batch, cropped to the chunk.

    Returns ``(transition, class, y, x)`` float32.
    """
    from eowatch.models.predict import predict_change_batch

    n_p, _, h, w = x.shape
    out = np.empty((n_p - 1, model.card.architecture_args["n_classes"], h, w), np.float32)
    for y0 in range(0, h, chunk):
        for x0 in range(0, w, chunk):
            y1, x1 = min(y0 + chunk, h), min(x0 + chunk, w)
            ry0, rx0 = max(y0 - halo, 0), max(x0 - halo, 0)
            win = x[:, :, ry0 : min(y1 + halo, h), rx0 : min(x1 + halo, w)]
            probs = predict_change_batch(model, win[:-1], win[1:])
            out[:, :, y0:y1, x0:x1] = probs[:, :, y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
    return out


def naive_probs(model: Any, x: np.ndarray, window: int = NAIVE_WINDOW) -> np.ndarray:
    """The loop people write first: one window, one transition, one forward pass at a time.

    Returns ``(transition, class, y, x)`` float32; pixels near window edges see zero padding.
    """
    import torch

    from eowatch.models.predict import preprocess

    n_p, _, h, w = x.shape
    out = np.empty((n_p - 1, model.card.architecture_args["n_classes"], h, w), np.float32)
    for y0 in range(0, h, window):
        for x0 in range(0, w, window):
            for t in range(n_p - 1):
                ys, xs = slice(y0, y0 + window), slice(x0, x0 + window)
                before = torch.from_numpy(preprocess(model.card, x[t, :, ys, xs]))[None].float()
                after = torch.from_numpy(preprocess(model.card, x[t + 1, :, ys, xs]))[None].float()
                logits = model.module(before, after)
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


def run_comparison(model: Any, x: np.ndarray, chunk: int, repeats: int) -> dict[str, Any]:
    """Time both paths ``repeats`` times on ``x`` and compare their outputs (the testable core)."""
    halo = model.card.receptive_field_px // 2 + 1
    margin = model.card.receptive_field_px // 2
    t_engine, t_naive = [], []
    warm = x[:, :, : 2 * NAIVE_WINDOW, : 2 * NAIVE_WINDOW]  # first calls pay for oneDNN kernel setup
    engine_probs(model, warm, chunk, halo)
    naive_probs(model, warm)
    for _ in range(repeats):
        with Stopwatch() as sw:
            engine = engine_probs(model, x, chunk, halo)
        t_engine.append(sw.seconds)
        with Stopwatch() as sw:
            naive = naive_probs(model, x)
        t_naive.append(sw.seconds)
    px = (x.shape[0] - 1) * x.shape[2] * x.shape[3]
    rows = [
        {
            "method": method,
            "best_s": round(best_of(ts), 3),
            "all_s": [round(t, 3) for t in ts],
            "Mpx_per_s": round(px / best_of(ts) / 1e6, 3),
        }
        for method, ts in (("engine", t_engine), ("naive", t_naive))
    ]
    return {
        "rows": rows,
        "ratios": {"speed engine / naive (target >= 2)": ratio(best_of(t_naive), best_of(t_engine))},
        "checks": compare(engine, naive, NAIVE_WINDOW, margin),
    }


def _time_infer_region(cube: Path, spec: Any, repeats: int) -> float:
    """Seconds of eowatch's whole ``infer_region`` over every chunk (Zarr reads, baselines included)."""
    import zarr

    from eowatch.models.registry import get
    from eowatch.pipelines.inference import infer_region
    from eowatch.pipelines.spec import ChangeSpec

    change = ChangeSpec()
    halo = get(change.model).card.receptive_field_px // 2 + 1
    group = zarr.open_group(str(cube), mode="r", zarr_format=3)
    times = []
    for _ in range(repeats):
        with Stopwatch() as sw:
            for key in spec.grid.chunks():
                infer_region(key, spec, change, group, halo)
        times.append(sw.seconds)
    return best_of(times)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark on the 5.12 km cube; ``quick`` does one repetition instead of three."""
    import torch

    from eowatch.models.registry import get

    repeats = 1 if quick else 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a Dask worker uses (InferenceInputs.torch_threads); steadier timings
    try:
        cube, spec = ensure_cube()
        model = get("siamese-s2s1-change")
        x = load_cube(cube, tuple(model.card.bands))
        result = run_comparison(model, x, spec.grid.chunk, repeats)
        full = _time_infer_region(cube, spec, repeats)
    finally:
        torch.set_num_threads(threads)
    px = (x.shape[0] - 1) * x.shape[2] * x.shape[3]
    result["rows"].append(
        {
            "method": "engine infer_region (Zarr + CVA + SAR)",
            "best_s": round(full, 3),
            "Mpx_per_s": round(px / full / 1e6, 3),
        }
    )
    return {
        "name": "inference",
        "title": TITLE,
        "params": {
            "cube": f"{x.shape[3]}x{x.shape[2]} px, {x.shape[0]} periods, {x.shape[1]} channels",
            "model": f"{model.card.name} {model.card.version}",
            "naive_window": NAIVE_WINDOW,
            "torch_threads": 1,
            "repeats": repeats,
        },
        **result,
        "notes": [
            "Mpx/s counts output pixels x transitions; one untimed warm-up pass of each path precedes "
            "timing.",
            "On CPU the engine loses: a 268 x 268 px halo window runs slower per pixel than 64 x 64 windows "
            "(activations of the small window stay in cache), and the halo adds ~10 % pixels. Its wins are "
            "correctness (no seams) and GPU batching, not CPU speed.",
            "Differences outside the naive windows' interiors are the naive loop's seams (zero padding at "
            "window edges); the engine's halo makes chunked output equal whole-image inference.",
        ],
    }
