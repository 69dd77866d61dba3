"""The command line and the loop: aligned ticks, --dry-run output, --help, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from layouts import V1

from collector.agent import next_tick
from collector.cli import build_parser, parse_config
from collector.config import OPTIONS

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.mark.parametrize("now,interval,expected", [
    (1000.0, 10, 1010.0), (1003.7, 10, 1010.0), (1009.999, 10, 1010.0), (59.5, 15, 60.0),
    (1795000001.2, 60, 1795000020.0),  # 1795000020 = 60 * 29916667
])
def test_ticks_fall_on_multiples_of_the_interval(now: float, interval: float, expected: float) -> None:
    assert next_tick(now, interval) == expected


def test_help_documents_every_option_with_its_environment_variable() -> None:
    text = build_parser().format_help()
    for option in OPTIONS:
        assert option.flag in text and option.env in text, option.flag
    for flag in ("--dry-run", "--count", "--once"):
        assert flag in text


def test_flags_win_over_environment_variables() -> None:
    env = {"KUBEMONITOR_INTERVAL": "30", "NODE_NAME": "from-env", "KUBEMONITOR_SPOOL_MAX_BYTES": "1000"}
    config = parse_config(["--interval", "15"], env)
    assert config.interval == 15.0 and config.node == "from-env" and config.spool_max_bytes == 1000


def test_a_bad_environment_value_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config([], {"KUBEMONITOR_INTERVAL": "ten"})
    assert "KUBEMONITOR_INTERVAL='ten'" in capsys.readouterr().err


def test_dry_run_prints_one_json_batch_per_interval_from_a_fixture_tree() -> None:
    tree = V1 / "t1"
    result = run_cli("--dry-run", "--count", "1", "--interval", "1", "--node-name", "worker-1",
                     "--proc-root", str(tree / "proc"), "--sys-root", str(tree / "sys"),
                     "--pod-log-dir", str(tree / "var/log/pods"), "--metadata", "podlogs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    batch = json.loads(lines[0])
    # One tick, or a whole number of them when a loaded machine made the loop miss one.
    assert batch["node"] == "worker-1" and batch["interval_seconds"] in (1.0, 2.0, 3.0)
    assert {p["namespace"] for p in batch["pods"]} == {"shop", "data", "kube-system"}
    # The same files twice: nothing was used in between.
    assert all(p["cpu_seconds"] == 0 for p in batch["pods"])
    assert "Traceback" not in result.stderr


def test_a_named_cluster_goes_into_every_batch_and_no_name_sends_no_field() -> None:
    tree = V1 / "t1"
    common = ("--dry-run", "--count", "1", "--interval", "1", "--node-name", "worker-1",
              "--proc-root", str(tree / "proc"), "--sys-root", str(tree / "sys"), "--metadata", "none")
    named = run_cli(*common, "--cluster-name", "prod-eu")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout.splitlines()[0])["cluster"] == "prod-eu"
    unnamed = run_cli(*common)
    assert unnamed.returncode == 0, unnamed.stderr
    assert "cluster" not in json.loads(unnamed.stdout.splitlines()[0])


def test_sigterm_stops_the_loop_cleanly() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "--dry-run", "--interval", "1", "--metadata", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        seen = ""
        while "primed counters" not in seen and time.monotonic() < deadline:
            seen += process.stderr.readline()  # the loop is running once it has primed
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    err = seen + err
    assert "received SIGTERM, stopping" in err and "Traceback" not in err
    for line in out.splitlines():
        json.loads(line)
