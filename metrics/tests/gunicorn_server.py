"""A real gunicorn serving monitor_site on a free local port, for tests that need real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_of_test_db() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Gunicorn:
    def __init__(self, log_path: Path, database_url: str, args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "0",
                    "ALLOWED_HOSTS": "127.0.0.1", "STATIC_MANIFEST": "0", **(env or {})}
        # The image's config by default (gunicorn.conf.py at the repository root).
        self.args = args if args is not None else []
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Gunicorn":
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "monitor_site.wsgi:application",
             "--bind", f"127.0.0.1:{self.port}", *self.args],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise AssertionError("gunicorn did not answer /healthz within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
