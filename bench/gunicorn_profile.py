"""gunicorn config for `bench/ingest.py --profile-server`: cProfile (CPU time) around every request.

Requests run in worker threads (gthread) or the main thread (sync); a profiler per thread is
enabled in pre_request and disabled in post_request, and each worker dumps its stats to
$KM_PROFILE_DIR/worker-<pid>-<n>.prof when it exits.
"""

from __future__ import annotations

import cProfile
import os
import threading
import time

_local = threading.local()
_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def pre_request(worker, req):  # noqa: ANN001 - gunicorn hook signature
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
    for n, profile in enumerate(_profiles):
        profile.dump_stats(os.path.join(os.environ["KM_PROFILE_DIR"], f"worker-{worker.pid}-{n}.prof"))
