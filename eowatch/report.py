"""The end-of-run report on stdout (``eowatch run``, ``eowatch demo``): where the outputs are, what
changed, and each model stage's areas and scores from the run summary."""

from __future__ import annotations

from typing import Any

__all__ = [
    "print_landcover",
    "print_semantic_change",
    "print_summary",
    "print_vhr_change",
    "print_vhr_landcover",
]


def print_summary(summary: dict[str, Any]) -> None:
    """Human-readable end-of-run report on stdout."""
    out = summary["output"]
    ch = summary.get("changes_found", {})
    print()
    labels = {
        "change_cube": "Change cube",
        "analysis_cube": "Analysis cube",
        "crop_type_map": "Crop-type map",
        "vhr_change_map": "VHR change map",
        "landcover_map": "Land-cover map",
        "vhr_landcover_map": "VHR land-cover map",
        "semantic_change_map": "Semantic change",
        "quicklook": "Quicklook",
        "summary": "Summary",
    }
    for key, label in labels.items():
        if key in out:
            print(f"{label + ':':<20}{out[key]}")
    for collection, periods in (summary.get("sensor_gaps") or {}).items():
        print(f"{'Sensor gap:':<20}no {collection} acquisition in {', '.join(periods)}")
    gap_km2 = ch.get("s1_gap_km2") or {}
    if gap_km2:
        gap_model = (summary.get("gap_model") or {}).get("name", "the gap model")
        decided = ", ".join(f"{period} {km2:.2f} km²" for period, km2 in gap_km2.items())
        print(f"{'Without S1:':<20}decided by {gap_model}: {decided}")
    if ch:
        print(f"Area processed: {summary['area_km2']:.2f} km²; changed (model): {ch['changed_km2']:.3f} km²")
        for name, km2 in ch["by_type_km2"].items():
            print(f"  {name:<16} {km2:8.4f} km²")
    ev = summary.get("evaluation")
    if ev:
        m, c = ev["model"]["per_pixel"], ev["cva_baseline"]["per_pixel"]
        print(f"Against planted truth ({ev['scope']}):")
        print(f"  model        precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}")
        print(f"  CVA baseline precision {c['precision']:.3f}  recall {c['recall']:.3f}  F1 {c['f1']:.3f}")
    crops = summary.get("crop_types")
    if crops:
        print(f"Crop types ({crops['model']}): {crops['mapped_km2']:.2f} km² mapped")
        for name, km2 in crops["by_class_km2"].items():
            print(f"  {name:<16} {km2:8.4f} km²")
        cev = crops.get("evaluation")
        if cev:
            print(f"  against planted land cover: OA {cev['oa']:.3f}  kappa {cev['kappa']:.3f}")
    print_vhr_change(summary.get("vhr_change"))
    print_landcover(summary.get("landcover"))
    print_vhr_landcover(summary.get("vhr_landcover"))
    print_semantic_change(summary.get("semantic_change"))
    if "timings_s" in summary:
        print("Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items()))
    by_phase = (summary.get("worker_seconds") or {}).get("by_phase") or {}
    if by_phase:
        print("Worker time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in by_phase.items()))


def print_vhr_change(found: dict[str, Any] | None) -> None:
    """The VHR change lines of the end-of-run report: changed area per pair and scores against truth."""
    if not found:
        return
    if "skipped" in found:
        print(f"VHR change ({found['model']}): skipped, {found['skipped']}")
        return
    print(
        f"VHR change ({found['model']}): {found['changed_any_ha']:.2f} ha changed in any pair of "
        f"{found['vhr_area_ha']:.2f} ha"
    )
    for pair in found["pairs"]:
        print(f"  {pair['date_before']} -> {pair['date_after']}  {pair['changed_ha']:8.4f} ha")
    ev = found.get("evaluation")
    if ev:
        print(
            f"  against planted change: precision {ev['precision']:.3f}  recall {ev['recall']:.3f}  "
            f"F1 {ev['f1']:.3f}"
        )


def print_landcover(found: dict[str, Any] | None) -> None:
    """The land-cover lines of the end-of-run report: area per class of the last period (km²) and the
    maps' scores against the planted land cover, pooled over the periods."""
    if not found or not found.get("periods"):
        return
    last = found["periods"][-1]
    print(
        f"Land cover ({found['model']}), {last['period'][0][:7]}: {last['mapped_km2']:.2f} km² mapped "
        f"of {len(found['periods'])} periods"
    )
    for name, km2 in last["by_class_km2"].items():
        print(f"  {name:<28} {km2:8.4f} km²")
    ev = found.get("evaluation")
    if ev:
        print(
            f"  against planted land cover: OA {ev['oa']:.3f}  kappa {ev['kappa']:.3f}  mIoU {ev['miou']:.3f}"
        )


def print_vhr_landcover(found: dict[str, Any] | None) -> None:
    """The VHR land-cover lines of the end-of-run report: area per class of the last VHR date (ha) and
    the scores against the archive's VHR labels."""
    if not found:
        return
    if "skipped" in found:
        print(f"VHR land cover ({found['model']}): skipped, {found['skipped']}")
        return
    last = found["dates"][-1]
    print(f"VHR land cover ({found['model']}), {last['date']}: {found['vhr_area_ha']:.2f} ha")
    for name, ha in last["area_ha"].items():
        print(f"  {name:<16} {ha:8.4f} ha")
    ev = found.get("evaluation")
    if ev:
        print(f"  against VHR labels: OA {ev['oa']:.3f}  kappa {ev['kappa']:.3f}  mIoU {ev['miou']:.3f}")


def print_semantic_change(found: dict[str, Any] | None, top: int = 5) -> None:
    """The semantic change lines of the end-of-run report: changed area per transition, the largest
    (from -> to) pairs and the scores against planted truth."""
    if not found:
        return
    total = sum(t["changed_km2"] for t in found["transitions"])
    print(
        f"Semantic change ({found['model']}): {total:.3f} km² changed over "
        f"{len(found['transitions'])} transitions"
    )
    for pair, km2 in list(found["changed_km2_by_pair"].items())[:top]:
        print(f"  {pair:<30} {km2:8.4f} km²")
    ev = found.get("evaluation")
    if ev:
        print(
            f"  against planted change: SeK {ev['sek']:.3f}  mIoU {ev['miou']:.3f}  "
            f"binary F1 {ev['binary_f1']:.3f}"
        )
