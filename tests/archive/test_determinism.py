"""Same seed -> byte-identical archive; different seed -> different archive."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from eowatch.archive import ArchiveConfig, make_archive, validate_archive

TINY = ArchiveConfig(seed=1, size_km=1.2, start=dt.date(2026, 5, 3), end=dt.date(2026, 5, 20), vhr_dates=2)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_byte_identical(tmp_path: Path) -> None:
    a = _files(make_archive(tmp_path / "a", TINY).parent)
    b = _files(make_archive(tmp_path / "b", dataclasses.replace(TINY, workers=2)).parent)
    c = _files(make_archive(tmp_path / "c", dataclasses.replace(TINY, seed=2)).parent)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert validate_archive(tmp_path / "a") == []
    assert a["truth/change_type.tif"] != c["truth/change_type.tif"]
    assert sum(a[k] != c.get(k) for k in a) > 0.9 * len(a)
    assert not any(p.name.startswith(".partial-") for p in (tmp_path / "a").iterdir())
