"""Refresh the rollups and apply retention: `manage.py refreshrollups [--once | --loop] [--since T]`.

Tiers apache / plain need this on a schedule (`--loop`, every ROLLUP_REFRESH_SECONDS); in tier
tsl TimescaleDB's policies do the same work and this command only forces a refresh now.
Logs one line per run: what moved, what was recomputed, what retention removed, how long it took.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils.dateparse import parse_datetime

from metrics import retention, rollups

logger = logging.getLogger("metrics.refreshrollups")


def _parse_since(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None or moment.tzinfo is None:
        raise CommandError(f"--since: {value!r} is not an RFC 3339 time with an offset, e.g. 2026-11-22T10:00:00Z")
    return moment


class Command(BaseCommand):
    help = "Refresh the 1m/1h rollups from their watermark and late-data log, then apply retention."
    # A background worker: the URL and admin checks are the web process's business.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="Run once and exit (the default).")
        mode.add_argument(
            "--loop",
            action="store_true",
            help="Run every ROLLUP_REFRESH_SECONDS until SIGTERM or SIGINT.",
        )
        parser.add_argument(
            "--since",
            type=_parse_since,
            help="Also recompute every bucket from this time (RFC 3339) on.",
        )
        parser.add_argument(
            "--skip-retention", action="store_true", help="Refresh only; remove nothing."
        )

    def handle(self, *args: Any, loop: bool, since: datetime | None, skip_retention: bool, **options: Any) -> None:
        if not loop:
            self.run_once(since, skip_retention)
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: Any) -> None:
            logger.info("refreshrollups: signal %s, stopping after the current run", signum)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        period = settings.ROLLUP_REFRESH_SECONDS
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once(since, skip_retention)
            except Exception:
                # A failed run (database restarting, say) must not end the loop.
                logger.exception("refreshrollups: run failed")
            since = None  # a forced recompute happens once
            close_old_connections()
            stop.wait(max(0.0, period - (time.monotonic() - started)))

    def run_once(self, since: datetime | None, skip_retention: bool) -> None:
        started = time.monotonic()
        try:
            result = rollups.refresh(since=since)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        line = f"refreshrollups: {result.summary()}"
        if not skip_retention and not result.skipped:
            kept = retention.apply()
            line += f"; {kept.summary()}"
        line += f"; total {time.monotonic() - started:.3f} s"
        logger.info(line)
