"""Every bench in bench/ runs once at a tiny size, so a bench cannot rot unnoticed.

Each runs as its own process, as a person runs it, against its own database named after the
test DATABASE_URL's (<name>_bench_<bench>), dropped before and after. The test checks the exit
status and that the figures the bench exists to print are there and are numbers; it does not judge
them (a tiny run on a shared machine says nothing about the goals).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"(\d[\d,]*(?:\.\d+)?)"

pytestmark = pytest.mark.slow


def server_url() -> tuple[str, str]:
    """(server part of DATABASE_URL, its database name); the benches' defaults otherwise."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kubemonitor")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "kubemonitor"


def drop(name: str) -> None:
    server, _ = server_url()
    with psycopg.connect(server.replace("postgres://", "postgresql://") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bench_database(request: pytest.FixtureRequest) -> Iterator[str]:
    _, base = server_url()
    name = f"{base}_bench_{request.param}"[:63]
    drop(name)
    yield name
    drop(name)


def run_bench(args: list[str], env: dict[str, str] | None = None, timeout: int = 240) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=dict(os.environ, **(env or {})),
        capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def figure(output: str, pattern: str) -> float:
    match = re.search(pattern, output, re.MULTILINE)
    assert match, f"no line matching {pattern!r} in:\n{output}"
    return float(match.group(1).replace(",", ""))


def test_the_collector_bench_prints_cpu_and_rss_per_cycle() -> None:
    output = run_bench(["bench/collector.py", "--pods", "5", "--cycles", "3", "--runs", "1"])
    assert figure(output, rf"^cpu_ms_per_cycle: {NUMBER}$") >= 0
    assert figure(output, rf"^peak_rss_mb: {NUMBER}$") > 0
    assert figure(output, rf"^batch_pods: {NUMBER}$") == 5
    assert figure(output, rf"^batch_containers: {NUMBER}$") == 10
    # Tiny: all 5 pods are model servers scraped each cycle, and the same node is timed without.
    assert figure(output, rf"^model_servers: {NUMBER} ") == 5
    assert figure(output, rf"^cpu_ms_per_cycle_without_model_servers: {NUMBER}$") >= 0
    assert re.search(rf"^model_server_cpu_ms_per_cycle: -?{NUMBER}$", output, re.MULTILINE)


@pytest.mark.parametrize("bench_database", ["rollups"], indirect=True)
def test_the_rollups_bench_prints_its_three_refresh_times(bench_database: str) -> None:
    server, _ = server_url()
    output = run_bench(
        ["bench/rollups.py", "--pods", "10", "--nodes", "1", "--hours", "0.5"],
        env={"DATABASE_URL": f"{server}/{bench_database}"},
    )
    assert figure(output, rf"^tier \w+: {NUMBER} pod samples") == 10 * 180
    for label in ("first refresh", "steady refresh", "late-data refresh"):
        assert figure(output, rf"^{label} \([^)]*\):\s+{NUMBER} s") >= 0
    assert figure(output, rf"^on disk per rollup row, bytes: node 1m {NUMBER} ") > 0
    assert figure(output, rf"pod 1m {NUMBER} \(\d+ rows\)") > 0


@pytest.mark.parametrize("bench_database", ["query"], indirect=True)
def test_the_query_bench_prints_percentiles_for_every_case(bench_database: str) -> None:
    output = run_bench(["bench/query.py", "--tiny", "--fresh", "--database", bench_database])
    assert figure(output, rf"^pod rows loaded: {NUMBER}") == 2 * 360
    for kind in ("namespace", "deployment"):
        for case in ("1 h step 60 from 1m", "24 h step 300 from 1m", "7 d step 3600 from 1h", "7 d step 3600 from raw"):
            assert figure(output, rf"^{kind} {case}\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$") > 0
    assert figure(output, rf"^HTTP list /api/pods/\?limit=100\s+\d+\s+{NUMBER}") > 0
    assert figure(output, rf"^worst p95 from rollups: {NUMBER} ms") > 0
    assert figure(output, rf"^HTTP series 1 Deployments 24 h\s+\d+\s+{NUMBER}") > 0
    assert figure(output, rf"^one /api/series/ request for 1 Deployments over 24 h: p95 {NUMBER} ms") > 0
    assert figure(output, rf"^one /api/series/ .* with fields=cpu,memory: p95 {NUMBER} ms") > 0
    assert figure(output, rf"^summary /api/summary/\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$") > 0
    assert figure(output, rf"^statistics \?hours=24\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$") > 0
    assert figure(output, rf"^worst p95 summary / statistics: {NUMBER} ms") > 0
    assert figure(output, rf"^rightsizing list 24 h\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$") > 0


@pytest.mark.parametrize("bench_database", ["ingest"], indirect=True)
def test_the_ingest_bench_prints_end_to_end_raw_copy_and_their_ratio(bench_database: str) -> None:
    # Its gunicorn needs a free port and the server the benches use; it names its own database.
    server, _ = server_url()
    output = run_bench(["bench/ingest.py", "--tiny", "--database", bench_database, "--server", server])
    assert figure(output, rf"^\s+{NUMBER} pod samples/s \(with their containers") > 0
    assert figure(output, rf"^\s+gunicorn\s+{NUMBER} ms") > 0
    assert figure(output, rf"^\s+postgres \(bench backends\)\s+{NUMBER} ms") >= 0
    assert figure(output, rf"on disk per pod sample .*: raw {NUMBER} bytes; compressed ") > 0
    assert re.search(r"compressed (n/a \(no TSL\)|\d)", output)
    assert figure(output, rf"per core of server CPU .*: {NUMBER} pod samples/s") > 0
    assert figure(output, rf"^\s+one transaction per batch:\s+{NUMBER} batches/s") > 0
    assert figure(output, rf"^\s+50 batches per COPY:\s+{NUMBER} batches/s") > 0
    assert figure(output, rf"^== ratio end to end / raw COPY: {NUMBER} % of per-batch COPY") > 0
    assert "!! non-201" not in output
    # --disk: on-disk bytes over a history of varying values, stored in-process.
    output = run_bench(["bench/ingest.py", "--disk", "3", "--nodes", "1", "--pods", "5",
                        "--database", bench_database, "--server", server])
    assert figure(output, rf"^stored {NUMBER} intervals x 1 nodes x 5 pods") == 3
    assert figure(output, rf"on disk per pod sample .*: raw {NUMBER} bytes; compressed ") > 0


@pytest.mark.parametrize("bench_database", ["alerts"], indirect=True)
def test_the_alerts_bench_prints_the_time_of_each_evaluation_cycle(bench_database: str) -> None:
    output = run_bench(["bench/alerts.py", "--tiny", "--database", bench_database])
    assert figure(output, rf"^loaded 100 pods on 2 nodes: {NUMBER} pod samples") == 100 * 66
    assert figure(output, rf"^rules: {NUMBER}$") == 20
    for cycle in (1, 2, 3):
        assert figure(output, rf"^cycle {cycle}: {NUMBER} ms \(20 rules") > 0
    assert figure(output, rf"^steady cycle median: {NUMBER} ms") > 0


@pytest.mark.parametrize("bench_database", ["dashboard"], indirect=True)
def test_the_dashboard_bench_prints_percentiles_for_every_case(bench_database: str) -> None:
    output = run_bench(["bench/dashboard.py", "--tiny", "--database", bench_database])
    assert figure(output, rf"^pods loaded: {NUMBER}") == 50
    for case in ("pods by name, page 1", "pods by CPU", "pods by memory", "pods of a namespace by CPU", "pods by text", "overview page"):
        assert figure(output, rf"^{case}\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$") > 0
    assert figure(output, rf"^worst p95: {NUMBER} ms") > 0


def test_the_validate_bench_prints_each_checks_cost() -> None:
    output = run_bench(["bench/validate.py", "--tiny"])
    for label in ("pydantic validation", "duplicate keys", "bounds", "parse_batch"):
        assert figure(output, rf"^{label}: {NUMBER} ms$") > 0
    assert figure(output, rf"^checks' share of parse_batch: {NUMBER} %$") > 0
