"""gunicorn config used by bench/ingest.py for its optional modes.

* KM_GC_TUNED=1 (`--gc-tuned`): after fork, freeze the objects loaded at start-up out of the
  garbage collector's reach (gc.freeze) and collect generation 0 every 20,000 allocations instead
  of 700. A 110-pod batch allocates thousands of short-lived objects, almost all freed by
  reference counting, so the default thresholds run two or three collections per request, and
  every so often a full one over the whole process.
* KM_PROFILE_DIR=<dir> (`--profile-server`): cProfile (CPU time) around every request, in
  whichever thread runs it; each worker dumps <dir>/worker-<pid>-<n>.prof when it exits.
"""

from __future__ import annotations

import cProfile
import gc
import os
import threading
import time

_local = threading.local()
_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def post_fork(server, worker):  # noqa: ANN001 - gunicorn hook signature
    if os.environ.get("KM_GC_TUNED"):
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)


def pre_request(worker, req):  # noqa: ANN001
    if not os.environ.get("KM_PROFILE_DIR"):
        return
    profile = getattr(_local, "profile", None)
    if profile is None:
        profile = _local.profile = cProfile.Profile(time.process_time)
        with _lock:
            _profiles.append(profile)
    profile.enable()


def post_request(worker, req, environ, resp):  # noqa: ANN001
    profile = getattr(_local, "profile", None)
    if profile is not None:
        profile.disable()


def worker_exit(server, worker):  # noqa: ANN001
    directory = os.environ.get("KM_PROFILE_DIR")
    for n, profile in enumerate(_profiles):
        profile.dump_stats(os.path.join(directory, f"worker-{worker.pid}-{n}.prof"))
