"""Serve eowatch's deployments like ``eowatch deploy``, with fixed dates for the scheduled runs.

Usage: ``python tests/deployments/serve_child.py REGIONS OUT_ROOT START END`` with ``PREFECT_API_URL``
set. A scheduled run without dates monitors the months that closed before it, which the small test
archive (April-June 2026) does not cover; so this sets ``start``/``end`` on the scheduled deployments
and otherwise builds, registers and serves exactly what ``eowatch deploy`` does.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any


def main(regions_file: str, out_root: str, start: str, end: str) -> int:
    """Serve until interrupted; prints the deployment lines ``eowatch deploy`` prints."""
    from eowatch.infra.deployments import DeployConfig, describe, prefect_urls, serve
    from flows import deployments

    _, ui_url = prefect_urls()
    config = DeployConfig(regions_file=regions_file, out_root=out_root, workers=1, memory_limit="3GiB")
    built = deployments(config)
    for d in built:
        if d.schedules:
            d.parameters.update(start=start, end=end)

    def ready(ids: dict[str, Any]) -> None:
        print("\n".join(describe(built, ids, ui_url)), flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        serve(built, config.process_limit(sum(bool(d.schedules) for d in built)), ready)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
