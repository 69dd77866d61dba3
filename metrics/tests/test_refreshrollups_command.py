"""The refreshrollups command: one log line per run, --since, and a clean stop on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from metrics import rollups
from metrics.tests.factories import make_node, make_pod, make_pod_samples, reset_rollups

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def empty_rollups() -> None:
    reset_rollups()


def test_a_run_logs_one_line_saying_what_it_did_and_how_long_it_took(caplog):
    pod = make_pod(make_node(), "web-1", namespace="shop")
    start = rollups.floor_to(timezone.now(), timedelta(hours=1)) - timedelta(hours=2)
    make_pod_samples(pod, start, start + timedelta(hours=1), 10)
    with caplog.at_level(logging.INFO, logger="metrics.refreshrollups"):
        call_command("refreshrollups", "--once")
    lines = [r.getMessage() for r in caplog.records if r.name == "metrics.refreshrollups"]
    assert len(lines) == 1
    assert lines[0].startswith("refreshrollups: tier=")
    assert "retention" in lines[0] and lines[0].rstrip().endswith(" s")
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(samples) FROM metrics_rollup_namespace_1h WHERE namespace = 'shop'")
        assert cursor.fetchone()[0] == 360


def test_since_must_be_a_time_with_an_offset():
    with pytest.raises(CommandError, match="--since"):
        call_command("refreshrollups", "--since", "yesterday")
    with pytest.raises(CommandError, match="--since"):
        call_command("refreshrollups", "--since", "2026-11-22T10:00:00")


@pytest.mark.slow
def test_the_loop_stops_cleanly_on_sigterm():
    env = dict(os.environ)
    settings_dict = connection.settings_dict
    env["DATABASE_URL"] = (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
    )
    env["ROLLUP_REFRESH_SECONDS"] = "1"
    env["DEBUG"] = "1"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "refreshrollups", "--loop"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while len([line for line in lines if "refreshrollups: tier=" in line]) < 2:
            assert time.monotonic() < deadline, "".join(lines)
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(lines)
            lines.append(line)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
