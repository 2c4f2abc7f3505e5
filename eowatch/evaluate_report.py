"""The lines ``eowatch evaluate`` prints: one formatter per kind of metrics it saves (the keys of
``metrics.json`` besides ``model``, ``data`` and ``kind``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["headline"]


def _change(change: dict[str, Any], _: dict[str, Any]) -> list[str]:
    lines = []
    for who in ("model", "cva_baseline"):
        for view in ("per_pixel", "per_transition"):
            s = change[who][view]
            lines.append(
                f"{who:<13}{view:<15} precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
                f"F1 {s['f1']:.3f}  IoU {s['iou']:.3f}  kappa {s['kappa']:.3f}  OA {s['oa']:.4f}"
            )
    sem = change["semantic"]
    lines.append(f"semantic change: SeK {sem['sek']:.3f}  mIoU {sem['miou']:.3f}  OA {sem['oa']:.4f}")
    iou = sem["iou_by_type"]
    return lines + [f"  {k:<16} F1 {v:.3f}  IoU {iou[k]:.3f}" for k, v in sem["f1_by_type"].items()]


def _crop_type(crops: dict[str, Any], _: dict[str, Any]) -> list[str]:
    head = f"crop type: OA {crops['oa']:.3f}  kappa {crops['kappa']:.3f}  macro F1 {crops['macro_f1']:.3f}"
    return [head] + [f"  {k:<16} F1 {v:.3f}" for k, v in crops["f1_by_class"].items()]


def _land_cover(cover: dict[str, Any], _: dict[str, Any]) -> list[str]:
    head = (
        f"land cover: OA {cover['oa']:.3f}  kappa {cover['kappa']:.3f}  mIoU {cover['miou']:.3f}  "
        f"macro F1 {cover['macro_f1']:.3f}"
    )
    iou = cover["iou_by_class"]
    return [head] + [f"  {k:<24} F1 {v:.3f}  IoU {iou[k]:.3f}" for k, v in cover["f1_by_class"].items()]


def _semantic_change(sem: dict[str, Any], _: dict[str, Any]) -> list[str]:
    return [
        f"semantic change: SeK {sem['sek']:.3f}  mIoU {sem['miou']:.3f}  Fscd {sem['fscd']:.3f}  "
        f"binary F1 {sem['binary.f1']:.3f}  change-type SeK {sem['type.sek']:.3f}"
    ]


def _vhr_change(s: dict[str, Any], _: dict[str, Any]) -> list[str]:
    return [
        f"VHR change: precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}  "
        f"IoU {s['iou']:.3f}  kappa {s['kappa']:.3f}  ({len(s['pairs'])} date pairs pooled)"
    ]


def _vhr_land_cover(cover: dict[str, Any], _: dict[str, Any]) -> list[str]:
    head = (
        f"VHR land cover: OA {cover['oa']:.3f}  kappa {cover['kappa']:.3f}  mIoU {cover['miou']:.3f}  "
        f"({len(cover['dates'])} dates pooled)"
    )
    per_class = cover["per_class"].items()
    return [head] + [f"  {k:<12} F1 {v['f1']:.3f}  IoU {v['iou']:.3f}" for k, v in per_class]


def _vhr_buildings(s: dict[str, Any], _: dict[str, Any]) -> list[str]:
    return [
        f"new-building pixels called building: {s['building_recall_b']:.3f} after (B), "
        f"{s['building_share_a']:.3f} before (A); other B pixels "
        f"{s['building_share_b_unlabelled']:.3f}  ({s['pairs']:.0f} pairs pooled)"
    ]


def _vhr_pairs(s: dict[str, Any], _: dict[str, Any]) -> list[str]:
    return [
        f"{who:<7}precision {s[f'{who}.precision']:.3f}  recall {s[f'{who}.recall']:.3f}  "
        f"F1 {s[f'{who}.f1']:.3f}  IoU {s[f'{who}.iou']:.3f}  ({s['pairs']:.0f} pairs pooled)"
        for who in ("model", "cva")
    ]


def _change_pair(pair: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    lines = []
    for who in ("model", "recalibrated_2fold", "finetuned_2fold", "cva"):
        k = f"{metrics['pair']}.{who}"
        if f"{k}.f1" not in pair:
            continue
        auc = f"  AUC {pair[f'{k}.auc']:.3f}" if f"{k}.auc" in pair else ""
        lines.append(
            f"{k:<27} precision {pair[f'{k}.precision']:.3f}  recall {pair[f'{k}.recall']:.3f}  "
            f"F1 {pair[f'{k}.f1']:.3f}  kappa {pair[f'{k}.kappa']:.3f}{auc}"
        )
    return lines


def _worldcereal(wc: dict[str, Any], _: dict[str, Any]) -> list[str]:
    prefixes = ("flanders.model", "flanders.ndvi_centroid", "flanders.majority", "worldcereal_patch.model")
    return [
        f"{p:<28} OA {wc[f'{p}.oa']:.3f}  kappa {wc[f'{p}.kappa']:.3f}" for p in prefixes if f"{p}.oa" in wc
    ]


#: Formatter of each kind of metrics, in the order they are printed.
_FORMATTERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    "change": _change,
    "crop_type": _crop_type,
    "land_cover": _land_cover,
    "semantic_change": _semantic_change,
    "vhr_change": _vhr_change,
    "vhr_land_cover": _vhr_land_cover,
    "vhr_buildings": _vhr_buildings,
    "vhr_pairs": _vhr_pairs,
    "change_pair": _change_pair,
    "worldcereal": _worldcereal,
}


def headline(metrics: dict[str, Any]) -> list[str]:
    """The lines ``eowatch evaluate`` prints for the ``metrics`` it saves."""
    return [
        line
        for key, lines_of in _FORMATTERS.items()
        if metrics.get(key)
        for line in lines_of(metrics[key], metrics)
    ]
