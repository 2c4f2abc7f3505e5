"""Markdown sections of the run artifact for the optional model stages (crop types, VHR change, land
cover, semantic change, VHR land cover): pure builders, a run summary in, markdown lines out; each is
empty when the run has no such stage. ``artifacts.run_markdown`` puts them together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "crop_lines",
    "landcover_lines",
    "semantic_change_lines",
    "vhr_change_lines",
    "vhr_landcover_lines",
]


def crop_lines(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: area per crop class (and the map's scores against truth); empty without a map."""
    crops = summary.get("crop_types")
    if not crops:
        return []
    mapped = crops["mapped_km2"] or 1.0
    lines = [
        "",
        f"Crop types of the season (`{crops['model']}`, `{summary['output'].get('crop_type_map', '')}`):",
        "",
        "| crop type | area (km²) | share of mapped (%) |",
        "|---|---|---|",
        *[f"| {k} | {v:.4f} | {100 * v / mapped:.1f} |" for k, v in crops["by_class_km2"].items()],
    ]
    ev = crops.get("evaluation")
    if ev:
        lines += [
            "",
            f"Against planted land cover ({ev['scope']}, {ev['n_px']} px): OA **{ev['oa']:.3f}**, "
            f"kappa {ev['kappa']:.3f}, macro F1 {ev['macro_f1']:.3f}",
        ]
    return lines


def vhr_change_lines(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: changed area per VHR pair (and the map's scores against truth), or why the VHR
    change stage was skipped; empty without a VHR change model."""
    found = summary.get("vhr_change")
    if not found:
        return []
    if "skipped" in found:
        return ["", f"VHR change (`{found['model']}`) skipped: {found['skipped']}."]
    lines = [
        "",
        f"VHR change (`{found['model']}`, threshold {found['threshold']:g}, "
        f"`{summary['output'].get('vhr_change_map', '')}`) over {found['vhr_area_ha']:.2f} ha:",
        "",
        "| before | after | changed (m²) | changed (ha) |",
        "|---|---|---|---|",
        *[
            f"| {p['date_before']} | {p['date_after']} | {p['changed_m2']:.0f} | {p['changed_ha']:.4f} |"
            for p in found["pairs"]
        ],
    ]
    ev = found.get("evaluation")
    if ev:
        lines += [
            "",
            f"Against planted change ({ev['scope']}, {ev['n_px']} px): precision {ev['precision']:.3f}, "
            f"recall {ev['recall']:.3f}, F1 **{ev['f1']:.3f}**",
        ]
    return lines


def _class_table(header: str, columns: list[str], areas: list[Mapping[str, float]], fmt: str) -> list[str]:
    """A markdown table: one row per class (the keys of ``areas[0]``), one column per entry of ``areas``
    (``columns`` are their headers), areas formatted with ``fmt``."""
    classes = list(areas[0]) if areas else []
    return [
        f"| {header} | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
        *[f"| {c} | " + " | ".join(format(a.get(c, 0.0), fmt) for a in areas) + " |" for c in classes],
    ]


def landcover_lines(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: area per land-cover class and period in km² (and the maps' scores against the
    planted land cover); empty without a land-cover model."""
    found = summary.get("landcover")
    if not found:
        return []
    periods = found["periods"]
    lines = [
        "",
        f"Land cover per period (`{found['model']}`, `{summary['output'].get('landcover_map', '')}`), "
        "area in km²:",
        "",
        *_class_table(
            "class", [p["period"][0][:7] for p in periods], [p["by_class_km2"] for p in periods], ".4f"
        ),
    ]
    ev = found.get("evaluation")
    if ev:
        lines += [
            "",
            f"Against planted land cover ({ev['scope']}, {ev['n_px']} px): OA **{ev['oa']:.3f}**, "
            f"kappa {ev['kappa']:.3f}, mIoU {ev['miou']:.3f}",
        ]
    return lines


def semantic_change_lines(summary: Mapping[str, Any], top: int = 8) -> list[str]:
    """Markdown lines: changed area per transition and the largest (from -> to) pairs in km² (and the
    scores against planted truth); empty without a semantic change model."""
    found = summary.get("semantic_change")
    if not found:
        return []
    lines = [
        "",
        f"Semantic change (`{found['model']}`, `{summary['output'].get('semantic_change_map', '')}`):",
        "",
        "| transition | changed km² |",
        "|---|---|",
        *[
            f"| {t['period_before'][0][:7]} → {t['period_after'][0][:7]} | {t['changed_km2']:.4f} |"
            for t in found["transitions"]
        ],
        "",
        "| from → to | km² |",
        "|---|---|",
        *[f"| {p} | {km2:.4f} |" for p, km2 in list(found["changed_km2_by_pair"].items())[:top]],
    ]
    ev = found.get("evaluation")
    if ev:
        lines += [
            "",
            f"Against planted change ({ev['scope']}): SeK **{ev['sek']:.3f}**, mIoU {ev['miou']:.3f}, "
            f"binary F1 {ev['binary_f1']:.3f}",
        ]
    return lines


def vhr_landcover_lines(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: area per VHR land-cover class and date in ha (and the maps' scores against the
    archive's labels), or why the stage was skipped; empty without a VHR land-cover model."""
    found = summary.get("vhr_landcover")
    if not found:
        return []
    if "skipped" in found:
        return ["", f"VHR land cover (`{found['model']}`) skipped: {found['skipped']}."]
    dates = found["dates"]
    lines = [
        "",
        f"VHR land cover per date (`{found['model']}`, `{summary['output'].get('vhr_landcover_map', '')}`) "
        f"over {found['vhr_area_ha']:.2f} ha, area in ha:",
        "",
        *_class_table("class", [d["date"] for d in dates], [d["area_ha"] for d in dates], ".4f"),
    ]
    ev = found.get("evaluation")
    if ev:
        lines += [
            "",
            f"Against the archive's VHR labels ({ev['n_px']} px): OA **{ev['oa']:.3f}**, "
            f"kappa {ev['kappa']:.3f}, mIoU {ev['miou']:.3f}",
        ]
    return lines
