"""Catalog drift: what a finished run's catalog returns now that it did not when the run searched.

A finished run is not recomputed (its outputs are exactly-once); a re-run only reports, through
``catalog_drift``, that new, gone or reprocessed items would make another run.
"""

from __future__ import annotations

import json
import logging

from eowatch.errors import EowatchError
from eowatch.pipelines.search import items_token
from eowatch.pipelines.stages import Logger, Run, ids_by_collection, search_items

__all__ = ["catalog_drift"]

log = logging.getLogger("eowatch")


def catalog_drift(run: Run, info: Logger = log.info) -> str | None:
    """For a finished run: what the catalog returns now that it did not when the run searched (item
    counts per collection, or contents changed under the same ids), as a warning; None when unchanged,
    or for a summary from before ``items_token`` was recorded.

    The finished output stays as it is (a re-run is a no-op); the warning says how to include the change.
    A catalog that cannot be searched now is reported through ``info``, not raised: a finished run needs
    no catalog.
    """
    summary = json.loads(run.layout.summary.read_text()) if run.layout.summary.exists() else {}
    then = summary.get("items_token")
    if not then:
        return None
    try:
        items = search_items(run, lambda _msg: None)
    except EowatchError as exc:
        info(f"could not check the catalog for changes since this run finished: {exc}")
        return None
    if items_token(items) == then:
        return None
    before, now = summary.get("items", {}), {k: len(v) for k, v in ids_by_collection(items).items()}
    counts = {c: (before.get(c, 0), now.get(c, 0)) for c in sorted(before.keys() | now.keys())}
    moved = [f"{c} {a} → {b} items" for c, (a, b) in counts.items() if a != b]
    what = ", ".join(moved) or "item contents changed under the same ids"
    return (
        f"the catalog has changed since this run finished ({what}); its output is kept as it was "
        "(a finished run is not recomputed): run again into another output folder to include the change"
    )
