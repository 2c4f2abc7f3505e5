"""Run one ``monitor`` flow from a JSON parameter file: the process that test_kill_resume.py kills.

Usage: ``python tests/pipelines/monitor_child.py PARAMS.json`` with ``PREFECT_API_URL`` pointing at the
test's Prefect server. Kept as a script (not ``python -c``) so its traceback, if any, names real lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(params_file: str) -> int:
    """Run the flow with the parameters in ``params_file``; 0 when it completes."""
    from eowatch.infra.cluster import ClusterConfig
    from eowatch.pipelines.params import MonitorParams
    from flows import monitor

    params = MonitorParams(**json.loads(Path(params_file).read_text()))
    summary = monitor(params, ClusterConfig(n_workers=1, threads_per_worker=1, memory_limit="3GiB"))
    return 0 if summary.get("status") == "complete" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
