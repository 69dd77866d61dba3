"""Source registry: each source is timed, and one that fails is logged and skipped, never the cycle.

`Sources.run(name, fn, *args)` returns fn's result, or None when it raised; the outcome goes into
the batch's `collector.sources` so the server can show which sources work on which node. A
failing source logs one line when it starts failing (or its error changes) and one when it
recovers, not one per cycle.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, TypeVar

log = logging.getLogger("collector.sources")

T = TypeVar("T")


class Sources:
    def __init__(self) -> None:
        self.status: dict[str, dict[str, Any]] = {}
        self._last_error: dict[str, str | None] = {}

    def begin_cycle(self) -> None:
        self.status = {}

    def run(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        start = time.perf_counter()
        error: str | None = None
        result: T | None = None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # a source bug or kernel oddity must not stop the cycle
            error = f"{type(exc).__name__}: {exc}"[:500]
        seconds = round(time.perf_counter() - start, 6)
        self.status[name] = {"ok": error is None, "seconds": seconds, "error": error}
        previous = self._last_error.get(name)
        if error is not None and error != previous:
            log.warning("source %s failed: %s", name, error)
        elif error is None and previous is not None:
            log.info("source %s recovered", name)
        self._last_error[name] = error
        return result

    def mark(self, name: str, ok: bool, error: str | None = None) -> None:
        """Record a source that reports its own outcome (e.g. metadata served from cache)."""
        self.status[name] = {"ok": ok, "seconds": 0.0, "error": error}
