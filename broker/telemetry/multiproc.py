"""Housekeeping of prometheus-client's multiprocess folder (no Django needed: gunicorn's master uses it).

Every process writes its counters to ``<kind>_<pid>.db`` files in PROMETHEUS_MULTIPROC_DIR. When a
process group starts (gunicorn's master, the Celery worker), the files of processes that are gone
are removed: their counts start again from zero, which Prometheus reads as a counter reset (rate()
and increase() handle it), and the folder does not grow with every recycled worker. Files of live
processes (the worker's, when gunicorn restarts) are left alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_FILE = re.compile(r"[a-z_]+_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_dead_files(folder: str | None = None) -> int:
    folder = folder or os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not folder or not Path(folder).is_dir():
        return 0
    removed = 0
    for path in Path(folder).glob("*.db"):
        match = _FILE.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
