"""Evaluate the alert rules and send notifications: `manage.py evaluatealerts [--loop]`.

Each cycle evaluates every rule (one query each) and queues what is due, in one transaction under
an advisory lock (a second evaluator skips the cycle), then sends the queue for at most
ALERTS_SEND_BUDGET_SECONDS. Logs one line per cycle.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from metrics.alerts import deliver, evaluate

logger = logging.getLogger("metrics.alerts")


class Command(BaseCommand):
    help = "Evaluate the alert rules over the stored data and deliver notifications."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true",
                            help="Run every --interval seconds until SIGTERM or SIGINT.")
        parser.add_argument("--interval", type=float, default=None,
                            help="Seconds between cycles (default ALERTS_EVALUATION_SECONDS, 30).")

    def handle(self, *args: Any, loop: bool, interval: float | None, **options: Any) -> None:
        period = interval or float(getattr(settings, "ALERTS_EVALUATION_SECONDS", 30))
        if not loop:
            self.run_once()
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: Any) -> None:
            logger.info("evaluatealerts: signal %s, stopping after the current cycle", signum)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:
                # A failed cycle (database restarting, say) must not end the loop.
                logger.exception("evaluatealerts: cycle failed")
            close_old_connections()
            stop.wait(max(0.0, period - (time.monotonic() - started)))

    def run_once(self) -> None:
        started = time.monotonic()
        result = evaluate.run_cycle()
        if result.skipped:
            logger.info("evaluatealerts: another evaluator holds the lock; skipped")
            return
        evaluated = time.monotonic() - started
        budget = float(getattr(settings, "ALERTS_SEND_BUDGET_SECONDS", deliver.SEND_BUDGET))
        sent = deliver.send_due(budget=budget)
        logger.info(
            "evaluatealerts: %d rules in %.3f s; %d pending, %d fired, %d resolved; %d queued, %d sent, "
            "%d failed%s", result.rules, evaluated, result.pending, result.fired, result.resolved,
            result.notifications, sent.sent, sent.failed,
            f"; errors: {result.errors}" if result.errors else "",
        )
