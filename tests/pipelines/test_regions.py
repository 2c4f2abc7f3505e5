"""Regions files: the shipped one loads, bad ones fail with one-line InputErrors; backfill windows."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from eowatch.errors import InputError
from eowatch.pipelines.regions import backfill_windows, get_region, load_regions

REPO = Path(__file__).resolve().parents[2]
D = dt.date

GOOD = """\
regions:
  - name: {name}
    stac_url: {stac_url}
    bbox: {bbox}
    schedule: "{schedule}"
"""


def _write(tmp_path: Path, text: str | None = None, **fields: str) -> Path:
    values = {
        "name": "ghent-port",
        "stac_url": "https://example.com/stac",
        "bbox": "[3.7, 51.0, 3.8, 51.1]",
        "schedule": "0 6 1 * *",
        **fields,
    }
    path = tmp_path / "regions.yaml"
    path.write_text(text if text is not None else GOOD.format(**values))
    return path


def test_shipped_regions_file_has_the_demo_region(monkeypatch: pytest.MonkeyPatch) -> None:
    regions = load_regions(REPO / "regions.yaml")
    demo = regions["demo"]
    assert demo.collections.vhr == "vhr-rgbn" and demo.schedule
    monkeypatch.setenv("EOWATCH_STAC_URL", "http://127.0.0.1:9/stac")
    params = demo.monitor_params(D(2026, 3, 1), D(2026, 8, 31), "/tmp/eowatch-out")
    assert params.stac_url == "http://127.0.0.1:9/stac"
    assert params.out == "/tmp/eowatch-out/demo/2026-03-01_2026-08-31"
    assert params.crs == "EPSG:32631" and params.bounds == (600000.0, 5640000.0, 610000.0, 5650000.0)


def test_unset_environment_variable_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EOWATCH_STAC_URL", raising=False)
    demo = load_regions(REPO / "regions.yaml")["demo"]  # loading does not need it
    with pytest.raises(InputError, match=r"region demo: stac_url uses \$\{EOWATCH_STAC_URL\}, which is not"):
        demo.monitor_params(D(2026, 3, 1), D(2026, 8, 31), "/tmp/x")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "../x"}, r"region \.\./x: name: .*lowercase slug"),
        ({"name": "Ghent"}, "lowercase slug"),
        ({"schedule": "61 * * * *"}, r"region ghent-port: schedule: .*not a valid cron"),
        ({"schedule": "0 6 * *"}, "5-field cron"),
        ({"bbox": "[5, 51, 4, 52]"}, r"region ghent-port: bbox: bbox .* must be ordered minlon,minlat"),
        ({"bbox": "[3, 91, 4, 92]"}, "latitude 91.0 is outside"),
        ({"bbox": "[3, 51, 4]"}, r"region ghent-port: bbox"),
        ({"stac_url": "ftp://x"}, "must be an http"),
    ],
)
def test_bad_region_fields(tmp_path: Path, fields: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_regions(_write(tmp_path, **fields))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_unknown_key(tmp_path: Path) -> None:
    text = GOOD.format(name="a", stac_url="https://x", bbox="[3.7, 51.0, 3.8, 51.1]", schedule="@daily")
    text = text.replace('schedule: "@daily"', "shedule: '0 6 * * *'")
    with pytest.raises(InputError, match=r"region a: shedule: unknown key"):
        load_regions(_write(tmp_path, text))


def test_duplicate_names(tmp_path: Path) -> None:
    one = GOOD.format(name="a", stac_url="https://x", bbox="[3.7, 51.0, 3.8, 51.1]", schedule="0 6 * * *")
    text = one + one.removeprefix("regions:\n")
    with pytest.raises(InputError, match="region name 'a' is defined twice"):
        load_regions(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("regions: [", "not valid YAML"),
        ("regions: []", "at least 1"),
        ("- a\n- b\n", "file"),
        ("regions:\n  - name: a\n    stac_url: https://x\n", "exactly one AOI"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_regions(_write(tmp_path, text))


def test_missing_file_and_missing_region(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read regions file"):
        load_regions(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"no region 'b' in .*it defines: ghent-port"):
        get_region(_write(tmp_path), "b")


def test_geojson_region_gives_geojson_params(tmp_path: Path) -> None:
    text = (
        "regions:\n  - name: poly\n    stac_url: https://x\n    geojson:\n      type: Polygon\n"
        "      coordinates: [[[3.7, 51.0], [3.8, 51.0], [3.8, 51.1], [3.7, 51.0]]]\n"
    )
    params = load_regions(_write(tmp_path, text))["poly"].monitor_params(D(2026, 1, 1), D(2026, 3, 31), "o")
    assert params.geojson is not None and params.bbox is None


@pytest.mark.parametrize(
    ("start", "end", "months", "expected"),
    [
        (
            D(2026, 4, 1),
            D(2026, 6, 30),
            2,
            [(D(2026, 4, 1), D(2026, 5, 31)), (D(2026, 5, 1), D(2026, 6, 30))],
        ),
        (
            D(2026, 1, 15),
            D(2026, 6, 10),
            3,
            [
                (D(2026, 1, 15), D(2026, 3, 31)),
                (D(2026, 3, 1), D(2026, 5, 31)),
                (D(2026, 5, 1), D(2026, 6, 10)),
            ],
        ),
        (
            D(2026, 11, 1),
            D(2027, 2, 28),
            3,
            [(D(2026, 11, 1), D(2027, 1, 31)), (D(2027, 1, 1), D(2027, 2, 28))],
        ),
        (D(2026, 1, 1), D(2026, 2, 10), 3, [(D(2026, 1, 1), D(2026, 2, 10))]),
    ],
)
def test_backfill_windows_share_one_month(
    start: dt.date, end: dt.date, months: int, expected: list[tuple[dt.date, dt.date]]
) -> None:
    windows = backfill_windows(start, end, months)
    assert windows == expected
    for (_, a_end), (b_start, _) in itertools.pairwise(windows):
        assert b_start == a_end.replace(day=1)  # the boundary month is in both windows


def test_backfill_windows_cover_every_transition_once() -> None:
    for months in (2, 3, 4, 6):
        windows = backfill_windows(D(2025, 1, 1), D(2026, 12, 31), months)
        transitions = [
            (m1, m2) for a, b in windows for m1, m2 in zip(_months(a, b), _months(a, b)[1:], strict=False)
        ]
        assert transitions == list(
            zip(
                _months(D(2025, 1, 1), D(2026, 12, 31)), _months(D(2025, 2, 1), D(2026, 12, 31)), strict=False
            )
        )
        assert all(len(_months(a, b)) >= 2 for a, b in windows)


def _months(a: dt.date, b: dt.date) -> list[tuple[int, int]]:
    return [
        (y, m) for y in range(a.year, b.year + 1) for m in range(1, 13) if a.replace(day=1) <= D(y, m, 1) <= b
    ]


def test_backfill_windows_reject_bad_ranges() -> None:
    with pytest.raises(InputError, match="at least 2 months"):
        backfill_windows(D(2026, 1, 1), D(2026, 6, 30), 1)
    with pytest.raises(InputError, match="spans one month"):
        backfill_windows(D(2026, 1, 1), D(2026, 1, 30))
    with pytest.raises(InputError, match="before start"):
        backfill_windows(D(2026, 3, 1), D(2026, 1, 30))


def test_precision_goes_from_the_region_to_the_change_stage(tmp_path: Path) -> None:
    """A region (or ``eowatch run --precision``) can opt in to bf16 change inference on CPU; it reaches
    the change stage's spec, so it is part of the run token, and a wrong value is a one-line error."""
    from eowatch.cli import build_parser, run_params

    text = GOOD.format(name="a", stac_url="https://x", bbox="[3.7, 51.0, 3.8, 51.1]", schedule="0 6 1 * *")
    region = load_regions(_write(tmp_path, text + "    precision: bfloat16\n"))["a"]
    params = region.monitor_params(D(2026, 3, 1), D(2026, 8, 31), tmp_path / "out")
    assert params.precision == "bfloat16" and params.to_config().change.precision == "bfloat16"
    with pytest.raises(InputError, match=r"region b: precision: .*'auto', 'float32' or 'bfloat16'"):
        load_regions(_write(tmp_path, text.replace("name: a", "name: b") + "    precision: fp8\n"))
    argv = ["run", "--stac-url", "https://x", "--bbox", "3.7,51.0,3.8,51.1", "--start", "2026-03-01"]
    argv += ["--end", "2026-08-31", "--out", str(tmp_path / "o")]
    args = build_parser().parse_args([*argv, "--precision", "bfloat16"])
    assert run_params(args).to_config().change.precision == "bfloat16"
    assert run_params(build_parser().parse_args(argv)).precision == "auto"
