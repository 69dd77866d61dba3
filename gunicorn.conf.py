"""gunicorn's settings for every way kubemonitor is served: the image, compose, k8s, scripts/run.sh.

gunicorn reads ./gunicorn.conf.py from its working directory (/app in the image, the repository
for scripts/run.sh and the tests); command-line options still win.

* The worker reads each whole request without blocking before a thread runs the application, so a
  slow or stalled client never holds a worker (monitor_site/gunicorn_worker.py, issue 8). One
  thread per worker process keeps the sync worker's model: one request at a time per process, one
  database connection each; WEB_CONCURRENCY processes, as before.
* A fresh folder for prometheus-client's multiprocess mode, so /metrics answers with the counters
  of every worker whichever worker it reaches (see metrics/telemetry.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

worker_class = "monitor_site.gunicorn_worker.BufferingWorker"
threads = 1

_created: list[str] = []


def on_starting(server: Any) -> None:
    # Before the workers fork, so that each inherits it and prometheus-client picks the
    # multiprocess mode when it is first imported there.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        # Left by an earlier server with the same folder: counters start from zero again.
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.unlink(os.path.join(folder, name))
    else:
        folder = tempfile.mkdtemp(prefix="kubemonitor-prometheus-")
        _created.append(folder)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's counters stay in the totals; only its live-gauge files would go (none today).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for folder in _created:
        shutil.rmtree(folder, ignore_errors=True)
