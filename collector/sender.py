"""POST gzipped batches to /api/ingest/ with a bearer token, retrying with backoff and jitter.

Outcomes: "stored" (201, or 200 duplicate: the server already had this (node, time), so a retry
is harmless); "retry" (network error, timeout, 5xx, 408, 429, and 401/403, which mean the token is
wrong or revoked: the batch itself is fine and is kept until the token is fixed); "rejected"
(any other 4xx: the server will never accept this batch, so it is logged with the server's error
and dropped instead of being retried forever).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any, Callable

log = logging.getLogger("collector.sender")

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
KEEP_ON = {401, 403, 408, 429}


def backoff(attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return rng(0.0, min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt)))


class Token:
    """The bearer token, from a file re-read whenever it changes (mounted Secrets are updated in
    place), else from the configured value."""

    def __init__(self, value: str = "", path: str = "") -> None:
        self.value = value
        self.path = path
        self._stamp: tuple[int, int, int] | None = None

    def get(self) -> str:
        if self.path:
            try:
                st = os.stat(self.path)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    with open(self.path, encoding="utf-8") as f:
                        self.value = f.read().strip()
                    self._stamp = stamp
            except OSError as exc:
                if self._stamp is not None or not self.value:
                    log.warning("cannot read token file %s: %s", self.path, exc)
                self._stamp = None
        return self.value


class Sender:
    def __init__(self, url: str, token: Token, session: Any = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if session is None:
            import requests  # only the sending agent pays for importing requests

            session = requests.Session()
        self.url = url
        self.token = token
        self.session = session
        self.sleep = sleep
        self.clock = clock
        self._down_since: float | None = None
        # Set by the agent on SIGTERM: stop retrying, the batch goes to the spool.
        self.stopping: Callable[[], bool] = lambda: False

    def post_once(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        token = self.token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self.session.post(self.url, data=body, headers=headers,
                                         timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except Exception as exc:  # requests' ConnectionError, Timeout, ...: the API is unreachable
            self._down(f"{type(exc).__name__}: {str(exc)[:200]}")
            return "retry"
        code = response.status_code
        if code in (200, 201):
            if self._down_since is not None:
                log.info("API reachable again after %.0f s", self.clock() - self._down_since)
                self._down_since = None
            return "stored"
        detail = response.text[:500].replace("\n", " ")
        if code >= 500 or code in KEEP_ON:
            self._down(f"HTTP {code}: {detail}")
            return "retry"
        log.error("API rejected a batch with HTTP %d, dropping it (it would never be accepted): %s",
                  code, detail)
        return "rejected"

    def _down(self, why: str) -> None:
        if self._down_since is None:
            log.warning("cannot deliver batches: %s; keeping them in the spool", why)
            self._down_since = self.clock()

    def send(self, body: bytes, deadline: float) -> str:
        """Try until stored, rejected, or the next retry would pass `deadline` (monotonic)."""
        attempt = 0
        while True:
            outcome = self.post_once(body)
            if outcome != "retry":
                return outcome
            pause = backoff(attempt)
            attempt += 1
            if self.clock() + pause + CONNECT_TIMEOUT > deadline or self.stopping():
                return "retry"
            self.sleep(pause)
            if self.stopping():
                return "retry"

    @property
    def down(self) -> bool:
        return self._down_since is not None
