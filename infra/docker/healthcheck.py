#!/usr/bin/env python3
"""Container healthcheck of the eowatch images (Docker ``HEALTHCHECK``; Kubernetes uses its own probes).

With ``EOWATCH_HEALTH_URL`` set (e.g. ``http://127.0.0.1:8788/health`` for a Dask worker,
``http://127.0.0.1:8080/health`` for a Prefect worker started with ``--with-healthcheck``), the container
is healthy when that URL answers 200 within ``EOWATCH_HEALTH_TIMEOUT_S`` (default 10 s). Without it,
healthy means the software stack imports: eowatch's stages, Dask, Prefect and torch. Exit 0 healthy,
1 not, with one line on stderr saying why. Standard library only.
"""

from __future__ import annotations

import importlib
import os
import sys
import urllib.error
import urllib.request

MODULES = ("eowatch.pipelines.stages", "eowatch.infra.cluster", "distributed", "prefect", "torch")


def check_url(url: str, timeout_s: float) -> str | None:
    """None when ``url`` answers HTTP 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # an answer, but not a 2xx one
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} did not answer: {getattr(exc, 'reason', exc)}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def check_imports(modules: tuple[str, ...] = MODULES) -> str | None:
    """None when every module imports, else the first failure."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import-time failure makes the image unusable
            return f"cannot import {name}: {exc}"
    return None


def main() -> int:
    url = os.environ.get("EOWATCH_HEALTH_URL", "").strip()
    timeout_s = float(os.environ.get("EOWATCH_HEALTH_TIMEOUT_S", "10"))
    problem = check_url(url, timeout_s) if url else check_imports()
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
