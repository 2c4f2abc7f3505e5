"""GPU check of the inference engine: throughput against a naive loop and against the chip's roofline.

Run on a machine with a CUDA GPU (``python -m benchmarks.bench_gpu --out DIR``); on a CPU it runs the
same code on tiny inputs (``--dry-run``) so the script is tested before it reaches a GPU. It is not part
of ``benchmarks/run.py``: the project's own machines have no GPU. Results go to ``DIR/gpu.json`` and
``DIR/gpu.md``; the committed copy is ``benchmarks/results/gpu.json`` (see docs/performance.md).

For each shipped change model (S2+S1 ``siamese-s2s1-change``, VHR ``siamese-vhr-change``), on one input
of ``T`` periods drawn around the card's normalisation statistics (never zeros):

- the engine as the flow runs it on CUDA (``default_config`` / ``vhr_engine_config``: bf16 autocast,
  batches of raw windows normalised on the GPU), in IEEE float32, with the input normalised on the host
  before tiling (the engine before ``predict.window_normalizer``), with other window sizes and with
  cuDNN autotuning;
- a naive loop: 64 px windows one at a time, one forward pass per window and pair, float32, no
  ``inference_mode``;
- the model alone on a device-resident batch (CUDA events), which bounds what the engine can reach;
- the roofline: FLOPs per pixel (``torch.utils.flop_counter``) over the measured bf16 matrix rate, and
  the activation bytes an eager forward pass writes and reads over the measured copy bandwidth;
- GPU memory (``max_memory_allocated``) of the default engine as the image grows.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_inference import mask_agreement

NAIVE_WINDOW = 64
Predictor = Callable[[torch.Tensor], torch.Tensor]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, list[float], Any]:
    """Median wall-clock seconds of ``fn`` after one warm-up call, all times, and the last result."""
    out = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), [round(t, 4) for t in times], out


def chip_ceilings(device: torch.device, n: int) -> dict[str, float]:
    """Measured bf16 and float32 (no TF32) matrix-product rates (TFLOP/s) and device copy bandwidth (GB/s,
    bytes read + written), on random data."""
    gen = torch.Generator(device=device).manual_seed(0)
    out: dict[str, float] = {}
    for name, dtype, tf32 in (
        ("bf16_matmul_tflops", torch.bfloat16, False),
        ("fp32_matmul_tflops", torch.float32, False),
    ):
        a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            t, _, _ = timed(lambda a=a, b=b: a @ b, device, 5)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        out[name] = float(f"{2 * n**3 / t / 1e12:.3g}")  # 3 significant digits: never 0 on a slow CPU
    x = torch.randn(n * n * 4, device=device, generator=gen)
    t, _, _ = timed(lambda: x.clone(), device, 5)
    out["copy_GBps"] = float(f"{2 * x.numel() * 4 / t / 1e9:.3g}")
    return out


def draw_input(card: Any, periods: int, size: int, seed: int, dn: bool) -> np.ndarray:
    """``(periods, bands, size, size)`` float32 around the card's normalisation mean and std."""
    from eowatch.models.predict import draw_raw_inputs

    return draw_raw_inputs(card, periods, size, size, np.random.default_rng(seed), digital_numbers=dn)


def _select(features: Any, index: torch.Tensor) -> Any:
    if isinstance(features, torch.Tensor):
        return features.index_select(0, index)
    return [f.index_select(0, index) for f in features]


def batched_predictor(module: torch.nn.Module, n_dates: int, pairs: Sequence[tuple[int, int]]) -> Predictor:
    """Like the engine's predictors, but every window of a batch is encoded in one call and every pair
    decoded in one call (one large batch instead of one image per call)."""

    def predict(windows: torch.Tensor) -> torch.Tensor:
        features = module.encode(windows)  # type: ignore[operator]
        starts = range(0, windows.shape[0], n_dates)
        before = torch.tensor([s + i for s in starts for i, _ in pairs], device=windows.device)
        after = torch.tensor([s + j for s in starts for _, j in pairs], device=windows.device)
        logits = module.decode(_select(features, before), _select(features, after))  # type: ignore[operator]
        return logits.float().softmax(dim=1)

    return predict


def flops_per_output_px(module: torch.nn.Module, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> float:
    """FLOPs (2 per multiply-add, convolutions and matrix products) of encoding ``x`` ``(T, C, h, w)``
    once and decoding every pair, per output pixel of one pair."""
    from torch.utils.flop_counter import FlopCounterMode

    predict = batched_predictor(module, x.shape[0], pairs)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        predict(x)
    return counter.get_total_flops() / (len(pairs) * x.shape[-2] * x.shape[-1])


def activation_bytes_per_output_px(
    module: torch.nn.Module, x: torch.Tensor, pairs: Sequence[tuple[int, int]], device: torch.device
) -> float:
    """Bytes of every leaf module's output (in the autocast dtype), counted twice (written, then read by
    the next layer), for one eager bf16 forward pass, per output pixel of one pair: the eager pass's
    memory traffic, which sets a floor of ``bytes / copy bandwidth`` when nothing is fused."""
    total = 0

    def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += 2 * out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"),
        ):
            batched_predictor(module, x.shape[0], pairs)(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return total / (len(pairs) * x.shape[-2] * x.shape[-1])


def naive(
    model: Any,
    x: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    prepare: Callable[[np.ndarray], np.ndarray],
    device: torch.device,
    n_classes: int,
) -> np.ndarray:
    """The loop people write first: one 64 px window and one pair per forward pass, float32."""
    _, _, h, w = x.shape
    out = np.empty((len(pairs), n_classes, h, w), np.float32)
    for y0 in range(0, h, NAIVE_WINDOW):
        for x0 in range(0, w, NAIVE_WINDOW):
            win = torch.from_numpy(prepare(x[:, :, y0 : y0 + NAIVE_WINDOW, x0 : x0 + NAIVE_WINDOW])).to(
                device
            )
            for k, (i, j) in enumerate(pairs):
                logits = model.module(win[i : i + 1], win[j : j + 1])
                out[k, :, y0 : y0 + NAIVE_WINDOW, x0 : x0 + NAIVE_WINDOW] = (
                    logits.softmax(1).detach().cpu().numpy()[0]
                )
    return out


def bench_model(
    name: str, device: torch.device, size: int, repeats: int, sizes_memory: Sequence[int]
) -> dict[str, Any]:
    from eowatch.models import engine
    from eowatch.models.predict import predict_change_series, preprocess, season_days, with_season
    from eowatch.models.registry import get
    from eowatch.models.vhr_change import VHR_TASK, predict_vhr_pairs, vhr_engine_config

    model = get(name)
    engine.pin_module(model.module, device)
    card = model.card
    vhr = card.task == VHR_TASK
    periods = 3
    pairs = [(t, t + 1) for t in range(periods - 1)]
    n_classes = int(card.architecture_args["n_classes"])
    x = draw_input(card, periods, size, seed=0, dn=vhr)
    days = None if vhr else season_days(model, [20560, 20650, 20740])

    def prepare(arr: np.ndarray) -> np.ndarray:
        pre = preprocess(card, arr)
        return pre if vhr else with_season(model, pre, days)

    if vhr:
        base = vhr_engine_config(device)

        def run_engine(cfg: Any, arr: np.ndarray = x) -> np.ndarray:
            return predict_vhr_pairs(model, arr, pairs, config=cfg)
    else:
        base = engine.default_config(device, model.module.receptive_field // 2)

        def run_engine(cfg: Any, arr: np.ndarray = x) -> np.ndarray:
            return predict_change_series(model, arr, config=cfg, days=days)

    prepared = torch.from_numpy(prepare(x))

    def run_host_normalised(cfg: Any) -> np.ndarray:
        # The engine before window_normalizer: the whole input normalised on the host, then tiled.
        from eowatch.models.predict import _series_predictor
        from eowatch.models.vhr_change import _pair_predictor

        predictor = (
            _pair_predictor(model.module, periods, pairs)  # type: ignore[arg-type]
            if vhr
            else _series_predictor(model.module, periods)  # type: ignore[arg-type]
        )
        return engine.run_tiled(predictor, torch.from_numpy(prepare(x)), cfg, device=device)

    label = f"engine default (tile {base.tile}, {base.batch_windows} windows/batch, {base.precision})"
    bigger = replace(base, tile=2 * base.tile, batch_windows=max(1, base.batch_windows // 4))
    variants: dict[str, Callable[[], np.ndarray]] = {
        label: lambda: run_engine(base),
        "engine float32 (IEEE)": lambda: run_engine(replace(base, precision="float32")),
        "engine, normalised on the host (before)": lambda: run_host_normalised(base),
        "engine, 8 windows/batch": lambda: run_engine(replace(base, batch_windows=8)),
        f"engine, tile {bigger.tile}, {bigger.batch_windows} windows/batch": lambda: run_engine(bigger),
    }
    rows: list[dict[str, Any]] = []
    outputs: dict[str, np.ndarray] = {}
    px = len(pairs) * size * size
    for label, fn in variants.items():
        t, ts, out = timed(fn, device, repeats)
        outputs[label] = out
        rows.append(
            {"method": label, "median_s": round(t, 4), "all_s": ts, "Mpx_per_s": round(px / t / 1e6, 2)}
        )
    torch.backends.cudnn.benchmark = True
    try:
        t, ts, out = timed(lambda: run_engine(base), device, repeats)
    finally:
        torch.backends.cudnn.benchmark = False
    outputs["engine default, cudnn.benchmark"] = out
    rows.append(
        {
            "method": "engine default, cudnn.benchmark",
            "median_s": round(t, 4),
            "all_s": ts,
            "Mpx_per_s": round(px / t / 1e6, 2),
        }
    )
    naive_size = min(size, 1024)
    xn = x[:, :, :naive_size, :naive_size]
    t, ts, _ = timed(
        lambda: naive(model, xn, pairs, prepare, device, n_classes), device, max(1, repeats // 2)
    )
    naive_px = len(pairs) * naive_size * naive_size
    rows.append(
        {
            "method": f"naive 64 px loop, float32 (on {naive_size} px)",
            "median_s": round(t, 4),
            "all_s": ts,
            "Mpx_per_s": round(naive_px / t / 1e6, 2),
        }
    )
    naive_rate = naive_px / t

    # The model alone on a device-resident batch: the ceiling of any engine on this chip.
    side = base.tile + 2 * base.halo
    batch = torch.from_numpy(prepare(x[:, :, :side, :side])).to(device).repeat(base.batch_windows, 1, 1, 1)
    batch = batch.contiguous(memory_format=torch.channels_last)
    predict = batched_predictor(model.module, periods, pairs)
    out_px = base.batch_windows * len(pairs) * batch.shape[-2] * batch.shape[-1]
    model_only: dict[str, Any] = {}
    for precision, dtype in (("bf16", torch.bfloat16), ("float32", None)):

        def forward(batch: torch.Tensor = batch, dtype: Any = dtype) -> torch.Tensor:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None),
            ):
                return predict(batch)

        t, _, _ = timed(forward, device, repeats * 3)
        model_only[precision] = {"median_s": round(t, 5), "Mpx_per_s": round(out_px / t / 1e6, 2)}

    probe = prepared[:, :, :256, :256].contiguous()
    flops = flops_per_output_px(model.module.cpu(), probe, pairs)
    engine.pin_module(model.module, device)
    act_bytes = activation_bytes_per_output_px(model.module, probe, pairs, device)

    memory = []
    if device.type == "cuda":
        for s in sizes_memory:
            xs = draw_input(card, periods, s, seed=1, dn=vhr)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            run_engine(base, xs)
            memory.append(
                {
                    "image_px": s,
                    "gpu_peak_MiB": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                    "input_MiB": round(xs.nbytes / 2**20, 1),
                }
            )
            del xs

    default_label = rows[0]["method"]
    ref = outputs["engine float32 (IEEE)"]
    return {
        "model": f"{name} {card.version}",
        "input": f"{periods} periods x {len(card.bands)} bands x {size} x {size} px",
        "rows": rows,
        "model_only_device_resident": model_only,
        "flops_per_output_px": round(flops),
        "activation_bytes_per_output_px_bf16_eager": round(act_bytes),
        "ratios": {
            "engine default / naive": round(rows[0]["Mpx_per_s"] * 1e6 / naive_rate, 2),
            "best engine variant / naive": round(
                max(r["Mpx_per_s"] for r in rows[:-1]) * 1e6 / naive_rate, 2
            ),
            "engine default / model alone (bf16)": round(
                rows[0]["Mpx_per_s"] / model_only["bf16"]["Mpx_per_s"], 3
            ),
        },
        "checks": {
            f"{label} vs engine float32 (IEEE)": {
                k: round(v, 5 if k == "max_abs_diff" else 6)  # float rounding (1e-6) is no difference
                for k, v in mask_agreement(ref, out, card.decision_threshold).items()
            }
            for label, out in outputs.items()
            if label != "engine float32 (IEEE)"
        }
        | {"default_is": default_label},
        "gpu_memory_by_image_size": memory,
    }


def roofline(result: dict[str, Any], ceilings: dict[str, float]) -> dict[str, Any]:
    """Achieved TFLOP/s and the two floors (compute at the bf16 matrix rate, eager activation traffic at
    the copy bandwidth) for the best engine row and the model alone."""
    flops, act = result["flops_per_output_px"], result["activation_bytes_per_output_px_bf16_eager"]
    best = max(result["rows"], key=lambda r: r["Mpx_per_s"])
    alone = result["model_only_device_resident"]["bf16"]["Mpx_per_s"]
    compute_floor = flops / (ceilings["bf16_matmul_tflops"] * 1e12)
    memory_floor = act / (ceilings["copy_GBps"] * 1e9)
    return {
        "best_engine_row": best["method"],
        "best_engine_TFLOPs": round(best["Mpx_per_s"] * 1e6 * flops / 1e12, 2),
        "model_alone_TFLOPs": round(alone * 1e6 * flops / 1e12, 2),
        "floor_compute_Mpx_per_s": round(1 / compute_floor / 1e6),
        "floor_eager_memory_Mpx_per_s": round(1 / memory_floor / 1e6),
        "model_alone_share_of_tighter_floor": round(alone * 1e6 * max(compute_floor, memory_floor), 3),
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"# GPU check ({report['device']})", "", f"ceilings: {report['ceilings']}", ""]
    for res in report["models"]:
        lines += [f"## {res['model']}: {res['input']}", "", "| method | median s | Mpx/s |", "|---|---|---|"]
        lines += [f"| {r['method']} | {r['median_s']} | {r['Mpx_per_s']} |" for r in res["rows"]]
        lines += [
            "",
            f"model alone: {res['model_only_device_resident']}",
            f"ratios: {res['ratios']}",
            f"roofline: {res['roofline']}",
            f"memory: {res['gpu_memory_by_image_size']}",
            f"checks: {res['checks']}",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes (CPU allowed), to test the script")
    args = parser.parse_args(argv)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type != "cuda" and not args.dry_run:
        parser.error("no CUDA device: run with --dry-run to test the script on a CPU")
    size, repeats, mat, mem = (256, 1, 256, ()) if args.dry_run else (2048, 5, 8192, (1024, 2048, 4096))
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "ceilings": chip_ceilings(device, mat),
        "models": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("siamese-s2s1-change", "siamese-vhr-change"):
        try:
            res = bench_model(name, device, size, repeats, mem)
            res["roofline"] = roofline(res, report["ceilings"])
        except Exception as exc:  # one model's failure must not lose the other's numbers
            res = {"model": name, "error": f"{type(exc).__name__}: {exc}"}
        report["models"].append(res)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    ok = [r for r in report["models"] if "error" not in r]
    (args.out / "gpu.md").write_text(render({**report, "models": ok}))
    print(render({**report, "models": ok}))
    for r in report["models"]:
        if "error" in r:
            print("ERROR", r["model"], r["error"])
    return 0 if len(ok) == len(report["models"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
