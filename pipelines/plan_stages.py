"""Per-stage working sets of a run plan: what one task of each chunked stage reads, holds and writes.

``pipelines.plan`` turns these tallies into a ``StagePlan`` per stage. Each tally walks the chunks its
stage walks (the analysis grid, or the nested VHR grid for the VHR stages) and, per chunk, counts the
bytes read (COG bytes from the archive for cube/VHR, cube values for the model stages), the uncompressed
bytes written, the work (bytes or pixels, in the unit of the stage's ``plan.Throughput`` rate) and the
task's peak working set in bytes: a measured factor (``*_WORKING_SET``) or bytes per pixel
(``*_BYTES_*``) times the arrays one chunk holds, plus a fixed allowance (``*_TASK_FIXED_BYTES``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eowatch.pipelines.assets import resolve_asset_keys
from eowatch.pipelines.cube import cube_variables
from eowatch.pipelines.inference import change_variables, default_halo, halo_window
from eowatch.pipelines.plan_reads import (
    AssetReads,
    Footprints,
    Notes,
    band_assets,
    chunk_bounds,
    chunk_lonlat,
    note,
    solar_day_count,
)

if TYPE_CHECKING:
    from eowatch.pipelines.stages import Run

MIB = 1024**2


#: Cube task working set / bytes of the arrays one chunk loads (S2 bands + SCL as uint16 with the cloud
#: halo, S1 as float32) and writes (the composites). tracemalloc peak of one ``cube.compute_region``:
#: 2.2-2.4 for 128/256/512 px chunks on the seed-7 2.56 km and seed-5 5.12 km archives; set with margin.
CUBE_WORKING_SET = 2.8
#: The same for a VHR chunk (uint8 bands per acquisition day loaded + written): tracemalloc peak of
#: ``vhr.compute_vhr_region`` on the seed-7 archive (1024 px chunks, 3 dates): 1.15; set with margin.
VHR_WORKING_SET = 1.6
#: Memory a cube or VHR task holds outside numpy (GDAL decode buffers, odc-stac): peak RSS growth minus
#: tracemalloc peak of one ``compute_region`` call in a fresh process, 7-16 MiB.
READER_TASK_FIXED_BYTES = 16 * MIB
#: Change task working set / bytes of the float32 cube window (halo included), the network's input and,
#: per engine window, every period's input and features plus one transition's temporaries, and the
#: outputs (``change_tally``). Peak RSS growth of one ``inference.infer_region`` call in a fresh process
#: (after a 16 px warm-up): 1.18-1.3 for 256/512 px chunks, up to 1.64 for 64/128 px ones, where the
#: fixed part covers the difference; set to 1.4 + 20 MiB.
CHANGE_WORKING_SET = 1.4
CHANGE_TASK_FIXED_BYTES = 20 * MIB
#: VHR change task bytes per pixel of its read window (halo and padding included), by part, for T dates,
#: P pairs and C bands: the read and its float, no-data and normalised copies (17 T C), the engine's
#: window batch and its channels-last copy (8 T C), every date's encoder features (4 x 15.5 channels of
#: ``SiameseDiffUNet`` width 16 summed over its scales: 62 T), one decoder pass's temporaries at full
#: resolution (differences, upsampled and concatenated features, a block's output: 4 x 66 channels) and
#: per pair the probabilities, the assembled region and the outputs (45 P).
VHR_CHANGE_BYTES_PER_BAND_DATE = 25
VHR_CHANGE_BYTES_PER_DATE = 62
VHR_CHANGE_BYTES_DECODER = 264
VHR_CHANGE_BYTES_PER_PAIR = 45
#: VHR change task working set / the bytes above. Peak RSS growth of one ``vhr_change.vhr_change_region``
#: call in a fresh process (after a 16 px warm-up, 1024 px chunks of a 1530 px cube): 821 MiB for a
#: 1152 px window with 3 dates (the formula: 925 MiB), 460 MiB for a 640 x 1152 px one, 656 MiB with 2
#: dates (formula 740 MiB): the formula bounds it by 1.13x; set to 1.0.
VHR_CHANGE_WORKING_SET = 1.0
#: Land-cover task bytes per byte of its float32 read window (halo included: ``read_window``'s per-band
#: reads and their stack, one period's NaN-padded copy and normalised network input) and per pixel of an
#: engine window (``LandCoverUNet`` width 12, three levels: its activations, ~136 float32 channels at
#: full resolution). Peak RSS growth of one ``landcover.landcover_region`` call in a fresh process (after
#: a 16 px warm-up, 3 periods): 49 MiB for a 184 px window (128 px chunk), 97-113 MiB for 312 px (256 px
#: chunk; 145 MiB with 6 periods), 162-171 MiB for 568 px (512 px chunk); the formula (plus the outputs
#: and ``CHANGE_TASK_FIXED_BYTES``) bounds them by 1.15-1.4x.
LANDCOVER_BYTES_PER_READ_BYTE = 5
LANDCOVER_BYTES_PER_WINDOW_PX = 544
#: VHR land-cover task bytes per pixel of its read window (halo and padding included) for T dates and C
#: bands: the uint8 read and its float, no-data and normalised copies (25 T C), the engine's window
#: batch per date (25 T) and ``VhrLandCoverUNet``'s activations over the window (width 16, four levels:
#: 270). Peak RSS growth of one ``vhr_landcover.vhr_landcover_region`` call (a randomly initialised
#: network of the trained shape: memory does not depend on the weights) in a fresh process after a
#: 16 px warm-up, 1024 px chunks of a 1530 px cube: 429 / 507 / 632 MiB for a 1152 px window with 1 / 2
#: / 3 dates, 412 MiB for 640 x 1152 px with 3; the formula (plus ``CHANGE_TASK_FIXED_BYTES``) bounds
#: them by 1.02-1.21x.
VHR_LANDCOVER_BYTES_PER_BAND_DATE = 25
VHR_LANDCOVER_BYTES_PER_DATE = 25
VHR_LANDCOVER_BYTES_NETWORK = 270


@dataclass
class Tally:
    """Per-chunk figures of one stage, accumulated over its chunks."""

    chunks: int = 0
    read: int = 0
    output: int = 0
    work: float = 0.0
    task: int = 0
    steps: int = 0
    window: tuple[int, int] = (0, 0)

    def add(
        self, read: int, output: int, work: float, task: int, steps: int, window: tuple[int, int]
    ) -> None:
        self.chunks += 1
        self.read += read
        self.output += output
        self.work += work
        if task > self.task:
            self.task, self.window = task, window
        self.steps = max(self.steps, steps)


def cube_tally(run: Run, items: Sequence[dict[str, Any]], notes: Notes) -> Tally:
    """``cube.compute_region`` per chunk: S2 bands + SCL with the cloud halo, S1 on the chunk."""
    spec, grid = run.spec, run.spec.grid
    s2 = Footprints([d for d in items if d.get("collection") == spec.s2_collection])
    s1 = Footprints([d for d in items if spec.s1_collection and d.get("collection") == spec.s1_collection])
    s2_reads, s1_reads = AssetReads(grid, "uint16"), AssetReads(grid, "float32")
    out_px = len(spec.periods) * sum(dt.itemsize for dt, _, _ in cube_variables(spec).values())
    b, tally = spec.cloud_buffer_px, Tally()
    for key in grid.chunks():
        lonlat = chunk_lonlat(grid, key)
        lon = (lonlat[0] + lonlat[2]) / 2
        ys, xs = grid.chunk_slices(key)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        hits2, hits1 = s2.query(lonlat), s1.query(lonlat)
        read = loaded = 0
        if hits2:  # loaded as uint16
            keys = dict.fromkeys(resolve_asset_keys(hits2[0], [*spec.s2_bands, "scl"]).values(), 1)
            read += s2_reads(hits2, keys, chunk_bounds(grid, key, b))
            loaded += 2 * solar_day_count(hits2, lon) * (h + 2 * b) * (w + 2 * b) * len(keys)
        if hits1:  # loaded as float32
            keys = dict.fromkeys(resolve_asset_keys(hits1[0], spec.s1_bands).values(), 1)
            read += s1_reads(hits1, keys, chunk_bounds(grid, key, 0))
            loaded += 4 * solar_day_count(hits1, lon) * h * w * len(keys)
        task = round(CUBE_WORKING_SET * (loaded + out_px * h * w)) + READER_TASK_FIXED_BYTES
        steps = max(solar_day_count(hits2, lon), solar_day_count(hits1, lon))
        tally.add(read, out_px * grid.chunk**2, read, task, steps, (h + 2 * b, w + 2 * b))
    for reads in (s2_reads, s1_reads):
        for what, keys in reads.notes.items():
            note(notes, what, *keys)
    return tally


def vhr_tally(run: Run, items: Sequence[dict[str, Any]], notes: Notes) -> Tally:
    """``vhr.compute_vhr_region`` per chunk of the nested grid (none without VHR over the grid)."""
    from eowatch.pipelines import vhr

    coll = run.config.vhr_collection
    found = [d for d in items if coll and d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, found) if found else None
    tally = Tally()
    if grid is None:
        return tally
    bands, all_days = len(vhr.VHR_BANDS), len(vhr.acquisition_days(found))
    footprints, reads = Footprints(found), AssetReads(grid, "uint8")
    for key in grid.chunks():
        lonlat = chunk_lonlat(grid, key)
        ys, xs = grid.chunk_slices(key)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        hits = footprints.query(lonlat)
        days = solar_day_count(hits, (lonlat[0] + lonlat[2]) / 2)
        read = reads(hits, band_assets(hits[0], vhr.VHR_BANDS) if hits else {}, chunk_bounds(grid, key, 0))
        task = round(VHR_WORKING_SET * (days + all_days) * h * w * bands) + READER_TASK_FIXED_BYTES
        tally.add(read, all_days * bands * grid.chunk**2, read, task, days, (h, w))
    for what, keys in reads.notes.items():
        note(notes, what, *keys)
    return tally


def change_tally(run: Run, device: str = "cpu") -> Tally:
    """``inference.infer_region`` per chunk: a halo window of the cube, the model's windows, baselines;
    with a gap model, every chunk is counted as if it had an S1 gap (an upper bound).

    The model runs through ``models.engine`` (``default_config`` for ``device``): windows of at most
    ``tile`` px plus its halo, ``batch_windows`` at a time, every period encoded once per window.
    """
    import torch

    from eowatch.models.engine import default_config, plan_axis
    from eowatch.models.registry import card_of

    spec, grid, change = run.spec, run.spec.grid, run.config.change
    card = card_of(change.model)
    arch = card.architecture_args
    halo = default_halo(change)
    channels = len(dict.fromkeys([*card.bands, *spec.s2_bands, *(["vv_db"] if spec.s1_collection else [])]))
    t, inputs_ch, width, classes = (
        len(spec.periods),
        int(arch["in_channels"]) + int(arch.get("season_channels", 0)),
        int(arch["width"]),
        int(arch["n_classes"]),
    )
    engine = default_config(torch.device(device), card.receptive_field_px // 2)
    variables = change_variables()
    if not spec.s1_collection:
        variables = {k: v for k, v in variables.items() if not k.startswith("sar_")}
    if not change.gap_model:
        variables.pop("s1_gap")
    out_px = (t - 1) * sum(dt.itemsize for dt, _, _ in variables.values())
    # a chunk with an S1 gap also holds the gap model's probabilities (engine output, crop) and the merge
    gap_probs = 3 * 4 * (t - 1) * classes if change.gap_model else 0
    tally = Tally()
    for key in grid.chunks():
        ry, rx, cy, cx = halo_window(grid, key, halo)
        hh, ww = ry.stop - ry.start, rx.stop - rx.start
        px = (cy.stop - cy.start) * (cx.stop - cx.start)
        wy = plan_axis(hh, cy, engine.tile, engine.halo, engine.overlap)
        wx = plan_axis(ww, cx, engine.tile, engine.halo, engine.overlap)
        windows = min(engine.batch_windows, len(wy) * len(wx))
        window_px = windows * (wy[0].stop - wy[0].start) * (wx[0].stop - wx[0].start)
        read = 4 * t * channels * hh * ww  # read_window: (period, C, y, x) float32
        # the network's input over the halo window, then per window: every period's input and features,
        # and one transition's difference, concatenation and head output at a time
        network = 4 * t * inputs_ch * hh * ww + 4 * window_px * (t * (inputs_ch + width) + 5 * width)
        outputs = out_px * px + 2 * 4 * (t - 1) * classes * px + gap_probs * px  # variables + probabilities
        task = round(CHANGE_WORKING_SET * (read + network + outputs)) + CHANGE_TASK_FIXED_BYTES
        tally.add(read, out_px * grid.chunk**2, (t - 1) * px, task, t, (hh, ww))
    return tally


#: Semantic change task working set / the bytes ``semantic_change_tally`` counts: the cube window (halo
#: included), the network's input with its season planes, per engine window every period's input and
#: features plus one transition's fused features and heads, the probabilities (engine output and crop),
#: ``decode_semantic``'s temporaries (two int64 argsorts over the classes) and the outputs; for a
#: conditional model also its condition model's pass over the whole window. Peak RSS growth of one
#: ``semantic_change_region`` call in a fresh process (after a 16 px warm-up, 6 periods of the demo
#: cube, one torch thread): semantic 70 / 221 / 381 MiB for 128 / 256 / 512 px chunks, conditional
#: 339 MiB for 256 px; the formula (plus ``CHANGE_TASK_FIXED_BYTES``) bounds them by 1.3-1.9x.
SEMANTIC_WORKING_SET = 1.0
SEMANTIC_DECODE_BYTES_PER_CLASS = 16


def semantic_change_tally(run: Run, device: str = "cpu") -> Tally:
    """``semantic_change.semantic_change_region`` per chunk: a halo window of the cube through the engine
    (and, conditional, the condition model first), every transition decoded; three maps written."""
    import torch

    from eowatch.models.engine import default_config, plan_axis
    from eowatch.models.registry import get
    from eowatch.pipelines import semantic_change

    name = run.config.semantic_change_model
    assert name is not None
    model = get(name)
    arch, grid, t = model.card.architecture_args, run.spec.grid, len(run.spec.periods)
    k, width = int(arch["n_classes"]) - 1, int(arch["width"])
    inputs_ch = int(arch["in_channels"]) + int(arch.get("season_channels", 0))
    passes = 2 if arch.get("conditional") else 1
    halo = semantic_change.semantic_change_halo(name)
    engine = default_config(torch.device(device), model.module.receptive_field // 2)
    tally = Tally()
    for key in grid.chunks():
        ry, rx, cy, cx = halo_window(grid, key, halo)
        hh, ww = ry.stop - ry.start, rx.stop - rx.start
        px = (cy.stop - cy.start) * (cx.stop - cx.start)
        wy = plan_axis(hh, cy, engine.tile, engine.halo, engine.overlap)
        wx = plan_axis(ww, cx, engine.tile, engine.halo, engine.overlap)
        windows = min(engine.batch_windows, len(wy) * len(wx))
        window_px = windows * (wy[0].stop - wy[0].start) * (wx[0].stop - wx[0].start)
        read = 4 * t * len(model.card.bands) * hh * ww  # read_window: (period, C, y, x) float32
        network = 2 * 4 * t * inputs_ch * hh * ww + 4 * window_px * (t * (inputs_ch + width) + 8 * width)
        probs = 4 * (t - 1) * (1 + 2 * k)
        decode = (t - 1) * (SEMANTIC_DECODE_BYTES_PER_CLASS * k + 48)
        outputs = px * (2 * probs + decode + 6 * (t - 1))
        condition = (passes - 1) * (network + probs * hh * ww + 9 * (t - 1) * hh * ww)
        task = round(SEMANTIC_WORKING_SET * (read + network + outputs + condition)) + CHANGE_TASK_FIXED_BYTES
        tally.add(read, 6 * (t - 1) * grid.chunk**2, passes * (t - 1) * px, task, t, (hh, ww))
    return tally


def crop_tally(run: Run) -> Tally:
    """``crops.crop_region`` per chunk (no halo): the chunk's series, the per-step features, the outputs.

    The work is counted in pixels of the season at the change model's per-pixel rate: an upper bound,
    since the L-TAE costs far less per pixel than the convolutional change model.
    """
    from eowatch.models.registry import card_of
    from eowatch.pipelines.crops import crop_variables

    name = run.config.crop_model
    assert name is not None
    card, grid, t = card_of(name), run.spec.grid, len(run.spec.periods)
    out_px = sum(dt.itemsize for dt, _, _ in crop_variables(name).values())
    tally = Tally()
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        px = (ys.stop - ys.start) * (xs.stop - xs.start)
        read = 4 * t * len(card.bands) * px  # read_window: (period, band, y, x) float32
        # (N, T, B) series, (N, T, C) features and the attention's per-step embeddings, probabilities
        per_step = len(card.bands) + 2 * len(card.inputs_per_step) + 64
        network = 4 * px * t * per_step + 8 * px * len(card.classes)
        task = round(CHANGE_WORKING_SET * (read + network + out_px * px)) + CHANGE_TASK_FIXED_BYTES
        tally.add(read, out_px * grid.chunk**2, px, task, t, (ys.stop - ys.start, xs.stop - xs.start))
    return tally


def vhr_change_tally(run: Run, items: Sequence[dict[str, Any]]) -> Tally:
    """``vhr_change.vhr_change_region`` per chunk of the VHR grid: the chunk's window with the model's
    halo and padding, every date encoded, each consecutive pair decoded (none without a VHR pair).

    Raises:
        ModelError: the model does not fit the VHR cube (bands, pixel size), before anything runs.
    """
    from eowatch.models.registry import card_of
    from eowatch.models.vhr_change import chunk_tiling
    from eowatch.pipelines import vhr, vhr_change

    name, coll = run.config.vhr_change_model, run.config.vhr_collection
    found = [d for d in items if coll and d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, found) if name and found else None
    tally = Tally()
    if grid is None or name is None or len(vhr.acquisition_days(found)) < 2:
        return tally
    card = card_of(name)
    vhr_change.check_vhr_cube(card, vhr.VHR_BANDS, grid.resolution)
    t, c, tiling = len(vhr.acquisition_days(found)), len(card.bands), chunk_tiling(card)
    per_px = (
        VHR_CHANGE_BYTES_PER_BAND_DATE * t * c
        + VHR_CHANGE_BYTES_PER_DATE * t
        + VHR_CHANGE_BYTES_DECODER
        + VHR_CHANGE_BYTES_PER_PAIR * (t - 1)
    )
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        window = vhr_change.chunk_window(grid.shape, ys, xs, tiling)
        hh = window.rows.stop - window.rows.start + window.pad[0]
        ww = window.cols.stop - window.cols.start + window.pad[1]
        read = t * c * (window.rows.stop - window.rows.start) * (window.cols.stop - window.cols.start)
        task = round(VHR_CHANGE_WORKING_SET * per_px * hh * ww) + CHANGE_TASK_FIXED_BYTES
        px = (ys.stop - ys.start) * (xs.stop - xs.start)
        tally.add(read, 5 * (t - 1) * grid.chunk**2, (t - 1) * px, task, t, (hh, ww))
    return tally


def landcover_tally(run: Run, device: str = "cpu") -> Tally:
    """``landcover.landcover_region`` per chunk: the chunk's window with ``LANDCOVER_HALO`` px of halo
    read for every period, then one period at a time through the engine's windows; uint8 codes written.
    """
    import torch

    from eowatch.models.landcover import LANDCOVER_HALO, landcover_engine_config
    from eowatch.models.registry import card_of

    name = run.config.landcover_model
    assert name is not None
    card, grid, t = card_of(name), run.spec.grid, len(run.spec.periods)
    engine = landcover_engine_config(torch.device(device))
    k, tally = len(card.classes), Tally()
    for key in grid.chunks():
        ry, rx, cy, cx = halo_window(grid, key, LANDCOVER_HALO)
        hh, ww = ry.stop - ry.start, rx.stop - rx.start
        h, w = cy.stop - cy.start, cx.stop - cx.start
        read = 4 * t * len(card.bands) * hh * ww  # read_window: (period, band, y, x) float32
        side_y, side_x = (min(engine.tile, n) + 2 * engine.halo + engine.overlap for n in (h, w))
        windows = min(engine.batch_windows, math.ceil(h / engine.tile) * math.ceil(w / engine.tile))
        network = LANDCOVER_BYTES_PER_WINDOW_PX * windows * side_y * side_x
        outputs = h * w * (8 * k + t)  # one period's probabilities (engine, masked copy), every code
        task = LANDCOVER_BYTES_PER_READ_BYTE * read + network + outputs + CHANGE_TASK_FIXED_BYTES
        tally.add(read, t * grid.chunk**2, t * h * w, task, t, (hh, ww))
    return tally


def vhr_landcover_tally(run: Run, items: Sequence[dict[str, Any]]) -> Tally:
    """``vhr_landcover.vhr_landcover_region`` per chunk of the VHR grid: the chunk's window with the
    model's halo and padding, every date classified (none without VHR over the grid).

    Raises:
        ModelError: the model does not fit the VHR cube (bands, pixel size), before anything runs.
    """
    from eowatch.models.registry import card_of
    from eowatch.models.vhr_change import chunk_tiling
    from eowatch.pipelines import vhr, vhr_change, vhr_landcover

    name, coll = run.config.vhr_landcover_model, run.config.vhr_collection
    found = [d for d in items if coll and d.get("collection") == coll]
    grid = vhr.vhr_grid(run.spec.grid, found) if name and found else None
    tally = Tally()
    if grid is None or name is None:
        return tally
    card = card_of(name)
    vhr_landcover.check_vhr_landcover_cube(card, vhr.VHR_BANDS, grid.resolution)
    t, c, tiling = len(vhr.acquisition_days(found)), len(card.bands), chunk_tiling(card)
    per_px = (
        VHR_LANDCOVER_BYTES_PER_BAND_DATE * t * c
        + VHR_LANDCOVER_BYTES_PER_DATE * t
        + VHR_LANDCOVER_BYTES_NETWORK
    )
    for key in grid.chunks():
        ys, xs = grid.chunk_slices(key)
        window = vhr_change.chunk_window(grid.shape, ys, xs, tiling)
        hh = window.rows.stop - window.rows.start + window.pad[0]
        ww = window.cols.stop - window.cols.start + window.pad[1]
        read = t * c * (window.rows.stop - window.rows.start) * (window.cols.stop - window.cols.start)
        px = (ys.stop - ys.start) * (xs.stop - xs.start)
        tally.add(read, t * grid.chunk**2, t * px, per_px * hh * ww + CHANGE_TASK_FIXED_BYTES, t, (hh, ww))
    return tally
