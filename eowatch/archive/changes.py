"""Planted changes and their exact per-pixel truth (pure numpy).

Buildings and clearings become new units with an event (so their spectra follow a timeline); crop
rotation is an event on a whole winter-cereal unit; floods are a per-pixel overlay with a per-pixel
recession date (higher ground drains first).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from eowatch.archive.config import ArchiveConfig, Grid, epoch_day
from eowatch.archive.scene import (
    EV_BUILD,
    EV_CLEAR,
    EV_ROTATE,
    KIND_BARE,
    KIND_CLASS,
    KIND_CONIF,
    KIND_DECID,
    KIND_GRASS,
    KIND_MAIZE,
    KIND_RAPE,
    KIND_WCEREAL,
    Scene,
)
from eowatch.legend import change_code

BUILD, CLEAR, FLOOD, ROTATE = (
    change_code(n) for n in ("new_building", "forest_clearing", "flooding", "crop_rotation")
)
OPEN_KINDS = (KIND_GRASS, KIND_WCEREAL, KIND_MAIZE, KIND_RAPE, KIND_BARE)
# A rotation harvests the winter cereal on day t0 and the new crop's canopy ramp is centred on
# t0 + 45 (``phenology._apply_events``, EV_ROTATE): the change is *visible* (and recorded) then.
ROTATION_SHOWS_DAYS = 45


@dataclass
class Plan:
    """Planted events and per-pixel truth on the world grid."""

    events: list[
        dict
    ]  # id, type, from_class, to_class, start, end, completed, harvested (epoch days), slices
    change_type: np.ndarray  # uint8 (H, W) CHANGE_TYPES
    from_class: np.ndarray  # uint8 (H, W) LANDCOVER before the change (0 = no change)
    to_class: np.ndarray  # uint8 (H, W) LANDCOVER after the change (0 = no change)
    change_start: np.ndarray  # int32 (H, W) epoch day, 0 = none
    change_end: np.ndarray  # int32 (H, W) epoch day of flood recession, 0 = none/permanent
    event_id: np.ndarray  # int16 (H, W), -1 = none

    def flooded(self, day: int) -> np.ndarray:
        """Boolean mask of pixels under flood water on epoch ``day``."""
        return (self.change_type == FLOOD) & (self.change_start <= day) & (day < self.change_end)


class _Planner:
    def __init__(
        self, config: ArchiveConfig, scene: Scene, cover: dict[int, float], rng: np.random.Generator
    ) -> None:
        self.scene, self.rng, self.cover = scene, rng, cover
        self.s, self.e = epoch_day(config.start), epoch_day(config.end)
        self.period = self.e - self.s
        self.margin = int(max(3, min(20, round(0.1 * self.period))))
        shape = scene.grid.shape
        self.occupied = np.ones(shape, dtype=bool)
        inner = Grid.from_bbox(_shrink(scene.layout.aoi.bbox, 30.0), 10.0).window_in(scene.grid)
        self.occupied[inner] = False
        self.aoi_win = scene.layout.aoi.window_in(scene.grid)
        vhr10 = Grid.from_bbox(_shrink(scene.layout.vhr.bbox, 40.0), 10.0)
        self.vhr_win = vhr10.window_in(scene.grid)
        self.plan = Plan(
            [],
            *(np.zeros(shape, np.uint8) for _ in range(3)),
            *(np.zeros(shape, np.int32) for _ in range(2)),
            np.full(shape, -1, np.int16),
        )
        self.area_factor = (scene.layout.aoi.width * scene.layout.aoi.height) / 1e6  # per 100 km2

    # -- helpers ------------------------------------------------------------------------------------
    def _record(
        self,
        ctype: int,
        mask_win: tuple[slice, slice],
        mask: np.ndarray,
        to_class: int,
        start: int,
        end: int | np.ndarray = 0,
        completed: int | None = None,
        harvested: int | None = None,
    ) -> None:
        p = self.plan
        eid = len(p.events)
        before = self.scene.landcover[mask_win][mask]
        p.change_type[mask_win][mask] = ctype
        p.from_class[mask_win][mask] = before
        p.to_class[mask_win][mask] = to_class
        p.change_start[mask_win][mask] = start
        p.change_end[mask_win][mask] = end if np.isscalar(end) else end[mask]
        p.event_id[mask_win][mask] = eid
        counts = np.bincount(before, minlength=9)
        ev_end = int(end) if np.isscalar(end) else int(end[mask].max())
        p.events.append(
            {
                "id": eid,
                "type": ctype,
                "from_class": int(counts.argmax()),
                "to_class": to_class,
                "start": int(start),
                "end": ev_end,
                "completed": completed,
                "harvested": harvested,
                "pixels": int(mask.sum()),
                "window": mask_win,
            }
        )
        r, c = mask_win
        grown = ndimage.binary_dilation(mask, iterations=3)
        self.occupied[r, c] |= grown

    def _new_units(
        self, win: tuple[slice, slice], mask: np.ndarray, event: int, t0: float, t1: float
    ) -> None:
        scene = self.scene
        sub = scene.unit[win]
        old = np.unique(sub[mask])
        new = scene.units.copy_rows(old)
        scene.units.event[new] = event
        scene.units.t0[new] = t0
        scene.units.t1[new] = t1
        lut = dict(zip(old.tolist(), new.tolist(), strict=True))
        sub[mask] = np.vectorize(lut.__getitem__, otypes=[np.int32])(sub[mask])

    def _pick(self, candidates: np.ndarray, weights: np.ndarray | None = None) -> tuple[int, int] | None:
        idx = np.flatnonzero(candidates)
        if idx.size == 0:
            return None
        p = None
        if weights is not None:
            w = weights.ravel()[idx]
            p = w / w.sum()
        k = self.rng.choice(idx, p=p)
        return divmod(int(k), candidates.shape[1])

    def _restrict(self, mask: np.ndarray, vhr: bool) -> np.ndarray:
        if not vhr:
            return mask
        out = np.zeros_like(mask)
        out[self.vhr_win] = mask[self.vhr_win]
        return out

    # -- event types ------------------------------------------------------------------------------
    def buildings(self, n: int, n_vhr: int) -> None:
        scene = self.scene
        open_land = np.isin(scene.kind, OPEN_KINDS) & ~scene.floodplain
        weights = np.where(
            (scene.town_dist < 1.8) | ndimage.binary_dilation(scene.road, iterations=15), 1.0, 0.15
        )
        dur = int(np.clip(round(0.2 * self.period), 5, 35))
        placed = 0
        for attempt in range(40 * n):
            if placed >= n:
                break
            cand = self._restrict(open_land & ~self.occupied, placed < n_vhr)
            hit = self._pick(cand, weights)
            if hit is None or attempt > 30 * n:
                break
            h, w = (int(v) for v in self.rng.integers(4, 13, 2))
            win = (slice(hit[0], hit[0] + h), slice(hit[1], hit[1] + w))
            ok = open_land[win] & ~self.occupied[win]
            if ok.shape != (h, w) or not ok.all():
                continue
            cd = int(self.rng.integers(max(3, int(0.6 * dur)), dur + 1))
            t0 = int(
                self.rng.integers(
                    self.s + self.margin, max(self.s + self.margin + 1, self.e - self.margin - cd)
                )
            )
            self._new_units(win, ok, EV_BUILD, t0, t0 + cd)
            self._record(BUILD, win, ok, 7, t0, 0, completed=t0 + cd)
            placed += 1

    def clearings(self, n: int, n_vhr: int) -> None:
        scene = self.scene
        forest = np.isin(scene.kind, (KIND_DECID, KIND_CONIF))
        placed = 0
        for attempt in range(60 * n):
            if placed >= n:
                break
            cand = self._restrict(forest & ~self.occupied, placed < n_vhr)
            hit = self._pick(cand)
            if hit is None or attempt > 50 * n:
                break
            area = self.rng.uniform(1.0, 15.0 if placed >= n_vhr else 6.0) * 100.0  # pixels
            aspect = self.rng.uniform(1.0, 2.5)
            a, b = np.sqrt(area * aspect), np.sqrt(area / aspect)
            angle = self.rng.uniform(0, np.pi)
            half = int(np.ceil(0.5 * np.hypot(a, b))) + 1
            r0, c0 = hit[0] - half, hit[1] - half
            if r0 < 0 or c0 < 0:
                continue
            win = (slice(r0, r0 + 2 * half + 1), slice(c0, c0 + 2 * half + 1))
            rr, cc = np.mgrid[-half : half + 1, -half : half + 1]
            u = cc * np.cos(angle) + rr * np.sin(angle)
            v = -cc * np.sin(angle) + rr * np.cos(angle)
            rect = (np.abs(u) <= a / 2) & (np.abs(v) <= b / 2)
            if forest[win].shape != rect.shape:
                continue
            ok = rect & forest[win] & ~self.occupied[win]
            if ok.sum() < 100 or ok.sum() < 0.85 * rect.sum():
                continue
            t0 = int(self.rng.integers(self.s + self.margin, self.e - self.margin))
            self._new_units(win, ok, EV_CLEAR, t0, t0)
            self._record(CLEAR, win, ok, 8, t0, 0)
            placed += 1

    def rotations(self, n: int) -> None:
        scene = self.scene
        slices = ndimage.find_objects(scene.unit + 1)
        counts = np.bincount(scene.unit.ravel(), minlength=len(scene.units))
        lo = max(self.s + self.margin, epoch_day(dt.date(dt.date.fromordinal(719163 + self.s).year, 6, 1)))
        hi = min(self.e - self.margin - 20, lo + 35)
        if hi <= lo:
            lo, hi = self.s + self.margin, self.e - self.margin
        order = self.rng.permutation(len(scene.units))
        placed = 0
        for u in order:
            if placed >= n:
                break
            sl = slices[u]
            if scene.units.kind[u] != KIND_WCEREAL or sl is None or counts[u] < 150:
                continue
            mask = scene.unit[sl] == u
            if self.occupied[sl][mask].any():
                continue
            t0 = int(self.rng.integers(lo, hi))
            scene.units.event[u], scene.units.t0[u], scene.units.t1[u] = EV_ROTATE, t0, t0 + 8
            # truth carries the day the new crop shows, not the harvest (same draws, same imagery);
            # in a short archive the crop may come up after its end: the truth is then its last
            # days, as the field has visibly changed (harvested out of season) by then
            shows = min(t0 + ROTATION_SHOWS_DAYS, self.e - self.margin)
            self._record(ROTATE, sl, mask, 5, shows, 0, harvested=t0)
            placed += 1

    def floods(self, n: int) -> None:
        scene = self.scene
        thr = 0.45
        wet = scene.floodplain & (scene.height < thr) & np.isin(scene.kind, OPEN_KINDS) & ~self.occupied
        r, c = self.aoi_win
        ncols = c.stop - c.start
        duration = int(min(self.rng.integers(26, 36), self.period - 2 * self.margin))
        starts = np.arange(self.s + self.margin, self.e - self.margin - duration + 1)
        taken: list[int] = []
        for i in range(n):
            seg = np.zeros_like(wet)
            cs = slice(c.start + i * ncols // n, c.start + (i + 1) * ncols // n)
            seg[r, cs] = wet[r, cs]
            if seg.sum() < 50 or starts.size == 0:
                continue
            score = np.array(
                [np.mean([self.cover.get(d, 0.5) for d in range(t, t + duration)]) for t in starts]
            )
            score += self.rng.uniform(0, 0.05, score.size)
            for t in taken:
                score[np.abs(starts - t) < duration + 5] = -1
            t0 = int(starts[score.argmax()])
            taken.append(t0)
            rows = np.flatnonzero(seg.any(axis=1))
            cols = np.flatnonzero(seg.any(axis=0))
            win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            mask = seg[win]
            end = (t0 + duration - np.round(6 * scene.height[win] / thr)).astype(np.int32)
            self._record(FLOOD, win, mask, 1, t0, end)


def _shrink(bbox: tuple[float, float, float, float], d: float) -> tuple[float, float, float, float]:
    return (bbox[0] + d, bbox[1] + d, bbox[2] - d, bbox[3] - d)


def plan_changes(
    config: ArchiveConfig, scene: Scene, cover: dict[int, float], rng: np.random.Generator
) -> Plan:
    """Plant the changes into ``scene`` (adds event units in place) and return the truth.

    Args:
        config: Archive configuration (period).
        scene: Static scene; its unit map and table are extended in place.
        cover: Daily cloud-cover fraction keyed by epoch day (floods prefer cloudy weeks).
        rng: Generator for the plan.
    """
    planner = _Planner(config, scene, cover, rng)
    f = planner.area_factor
    planner.clearings(max(3, round(9 * f)), 1)
    planner.buildings(max(6, round(36 * f)), max(4, round(7 * min(f, 1.0))))
    planner.floods(1 if planner.period < 120 else 2)
    planner.rotations(max(2, round(6 * f)))
    return planner.plan


def truth_landcover(scene: Scene, plan: Plan, day: int) -> np.ndarray:
    """LANDCOVER per world pixel on epoch ``day`` (events applied; construction sites are bare soil)."""
    lc = scene.landcover.copy()
    ct, st = plan.change_type, plan.change_start
    active = (ct > 0) & (st <= day)
    perm = active & np.isin(ct, (CLEAR, ROTATE))
    lc[perm] = plan.to_class[perm]
    build = active & (ct == BUILD)
    done = np.zeros_like(build)
    for ev in plan.events:
        if ev["type"] == BUILD and ev["completed"] <= day:
            done[ev["window"]] |= plan.event_id[ev["window"]] == ev["id"]
    lc[build] = np.where(done[build], 7, 8)
    lc[plan.flooded(day)] = 1
    return lc


__all__ = ["BUILD", "CLEAR", "FLOOD", "KIND_CLASS", "ROTATE", "Plan", "plan_changes", "truth_landcover"]
