"""End to end with the real API: collector -> gunicorn + Django -> PostgreSQL -> rollups.

The collector's real agent loop (`python -m collector`, 2 s interval, with a spool) runs over a
simulated node (simnode.py: real v1 pod cgroups with a CPU burner and a memory holder) and posts
to the real API server, started as a subprocess against the pytest-django test database. The
server is stopped for a few cycles and started again; the batches made meanwhile wait in the
spool and are replayed in order. Then every batch the collector made (its log says which) must be
stored exactly once, with its pod and container rows, and `refreshrollups` must produce rollups
whose sums equal the raw sums.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from collector.tests import simnode
from collector.tests.simnode import SimNode, SimPod
from metrics import backend, rollups
from metrics.models import ContainerSample, Node, NodeSample, Pod, PodSample
from metrics.tests.factories import reset_rollups
from metrics.tokens import create_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 2.0
CPU_QUOTA = 0.2
BATCH_LOG = re.compile(r"collector\.agent batch (\S+): (\d+) pods")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class ApiServer:
    """gunicorn serving monitor_site on 127.0.0.1:<port>, against the test database."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("a")
        self.env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "0",
                    "ALLOWED_HOSTS": "127.0.0.1", "STATIC_MANIFEST": "0", "LOG_LEVEL": "INFO"}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "monitor_site.wsgi:application",
             "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4",
             "--graceful-timeout", "5", "--timeout", "30"],
            cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the API server exited at start"
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("the API server did not answer /healthz within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path / "api.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SimNode]:
    reason = simnode.why_unsupported(tmp_path)
    if reason is not None:
        pytest.skip(f"no simulated node here: {reason}")
    sim = SimNode(tmp_path)
    try:
        yield sim
    finally:
        problems = sim.close()
        assert not problems, f"simulated node not fully cleaned up: {problems}"


def spooled(spool: Path) -> int:
    return len(list(spool.glob("*.json.gz"))) if spool.exists() else 0


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def produced_batches(log_text: str) -> dict[str, int]:
    """batch end time -> number of pods, for every batch the agent made (sent or spooled)."""
    return {m.group(1): int(m.group(2)) for m in BATCH_LOG.finditer(log_text)}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def start_workloads(node: SimNode) -> tuple[SimPod, SimPod]:
    burner = node.add_pod("burner", ["burner"], namespace="e2e")
    node.set_cpu_limit(burner, burner.container("burner"), CPU_QUOTA)
    holder = node.add_pod("holder", ["holder"], qos="Guaranteed", namespace="e2e", host_network=True)
    processes = [
        node.start_python(burner, burner.container("burner"), simnode.BURN_CPU),
        node.start_python(holder, holder.container("holder"),
                          simnode.HOLD_MEMORY.format(size=32 * 1024 * 1024)),
    ]
    for process in processes:
        simnode.wait_for(process, "ready", timeout=30)
    return burner, holder


def kernel_cpu_ns(node: SimNode, pod: SimPod) -> int:
    return int(node.read("cpuacct", pod.cgroup, "cpuacct.usage"))


def test_batches_survive_an_api_outage_exactly_once_and_roll_up_to_the_raw_sums(
    api: ApiServer, node: SimNode, tmp_path: Path
) -> None:
    reset_rollups()
    _, token = create_token(f"e2e-{node.run_id}")
    burner, holder = start_workloads(node)
    node_name = f"e2e-{node.run_id}"
    spool = tmp_path / "spool"
    log_path = tmp_path / "collector.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KUBEMONITOR_") and k not in ("NODE_NAME", "KUBERNETES_SERVICE_HOST")}
    kernel_at_start = kernel_cpu_ns(node, burner)
    with log_path.open("w") as log:
        collector = subprocess.Popen(
            [sys.executable, "-m", "collector", "--api-url", api.url, "--token", token,
             "--interval", str(INTERVAL), "--node-name", node_name, "--spool-dir", str(spool),
             "--pod-log-dir", str(node.pod_log_dir), "--metadata", "podlogs",
             "--log-level", "DEBUG"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            # Up: a few batches go straight through.
            wait_until(lambda: NodeSample.objects.filter(node__name=node_name).count() >= 2,
                       6 * INTERVAL + 10, "two stored batches")
            # Down for a few cycles: batches pile up in the spool.
            api.stop()
            wait_until(lambda: spooled(spool) >= 3, 6 * INTERVAL + 10, "three spooled batches")
            during_outage = spooled(spool)
            # Back: the spool is replayed in order, and new batches follow.
            api.start()
            wait_until(lambda: spooled(spool) == 0, 6 * INTERVAL + 20, "the spool to drain")
            stored_after_drain = NodeSample.objects.filter(node__name=node_name).count()
            wait_until(
                lambda: NodeSample.objects.filter(node__name=node_name).count()
                >= stored_after_drain + 1,
                3 * INTERVAL + 10, "a batch after the replay",
            )
        finally:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=20)
            except subprocess.TimeoutExpired:
                collector.kill()
                collector.wait()
    log_text = log_path.read_text()
    assert collector.returncode == 0, log_text[-3000:]
    assert spooled(spool) == 0, "batches were left in the spool"
    assert "cannot deliver batches" in log_text  # the outage was seen...
    assert during_outage >= 3

    # -- every batch the collector made is stored exactly once -----------------------------------
    produced = produced_batches(log_text)
    assert len(produced) >= 6, log_text[-3000:]
    samples = list(NodeSample.objects.filter(node__name=node_name).order_by("time"))
    stored_ends = [s.time + timedelta(seconds=s.interval_seconds) for s in samples]
    assert sorted(stored_ends) == sorted(parse_time(t) for t in produced)
    assert len(set(stored_ends)) == len(stored_ends)
    for sample in samples:
        assert sample.interval_seconds == INTERVAL
        assert sample.cpu_seconds is not None

    # -- with their pod and container rows ---------------------------------------------------------
    node_row = Node.objects.get(name=node_name)
    pods = {p.uid: p for p in Pod.objects.filter(node=node_row)}
    assert burner.uid in pods and holder.uid in pods
    assert pods[burner.uid].name == burner.name and pods[burner.uid].namespace == "e2e"
    for end, pod_count in produced.items():
        start = parse_time(end) - timedelta(seconds=INTERVAL)
        assert PodSample.objects.filter(node=node_row, time=start).count() == pod_count, end
    for pod in (burner, holder):
        rows = PodSample.objects.filter(pod=pods[pod.uid])
        assert rows.count() == len(produced)
        containers = ContainerSample.objects.filter(pod=pods[pod.uid])
        assert containers.count() == len(produced)  # one workload container; never the pause
    # Nothing doubled shows in the CPU too: never more than the kernel counted while we ran.
    burner_cpu = sum(r.cpu_seconds for r in PodSample.objects.filter(pod=pods[burner.uid]))
    kernel_cpu = (kernel_cpu_ns(node, burner) - kernel_at_start) / 1e9
    assert 0 < burner_cpu <= kernel_cpu + 1e-6, (burner_cpu, kernel_cpu)

    # -- rollups equal the raw sums ------------------------------------------------------------------
    # The command, now: the newest minute is still read live from raw rows through the views.
    call_command("refreshrollups", "--once", "--skip-retention")
    assert_rollups_equal_raw(node_row.id, len(produced))
    # And as the next refreshes will see it once time has passed: every bucket materialized.
    result = rollups.refresh(now=max(stored_ends) + timedelta(minutes=3))
    assert result.skipped is None, result.skipped
    assert result.rows_1m > 0 or backend.storage_tier() == "tsl"
    assert_materialized_through(max(stored_ends))
    assert_rollups_equal_raw(node_row.id, len(produced))


def assert_materialized_through(moment: datetime) -> None:
    if backend.storage_tier() == "tsl":
        return  # continuous aggregates: TimescaleDB keeps its own watermark
    state = rollups.state()
    assert state["materialized_1m"] is not None and state["materialized_1m"] >= moment, state


def assert_rollups_equal_raw(node_id: int, batches: int) -> None:
    backend.clear_cache()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(interval_seconds), sum(cpu_seconds), "
            "sum(memory_working_set_bytes * interval_seconds) FROM metrics_podsample "
            "WHERE node_id = %s", [node_id])
        raw_pods = cursor.fetchone()
        for resolution in ("1m", "1h"):
            cursor.execute(
                f"SELECT sum(samples), sum(covered_seconds), sum(cpu_seconds), "
                f"sum(memory_working_set_byte_seconds) FROM metrics_rollup_pod_{resolution} "
                f"WHERE node_id = %s", [node_id])
            rolled = cursor.fetchone()
            assert rolled[0] == raw_pods[0], resolution
            assert rolled[1] == pytest.approx(raw_pods[1]), resolution
            assert rolled[2] == pytest.approx(raw_pods[2], rel=1e-9), resolution
            assert rolled[3] == pytest.approx(raw_pods[3], rel=1e-9), resolution
        cursor.execute(
            "SELECT count(*), sum(cpu_seconds) FROM metrics_nodesample WHERE node_id = %s",
            [node_id])
        raw_node = cursor.fetchone()
        for resolution in ("1m", "1h"):
            cursor.execute(
                f"SELECT sum(samples), sum(cpu_seconds) FROM metrics_rollup_node_{resolution} "
                f"WHERE node_id = %s", [node_id])
            rolled_node = cursor.fetchone()
            assert rolled_node[0] == raw_node[0] == batches, resolution
            assert rolled_node[1] == pytest.approx(raw_node[1], rel=1e-9), resolution
        cursor.execute(
            "SELECT sum(samples), sum(cpu_seconds) FROM metrics_rollup_namespace_1m "
            "WHERE namespace = 'e2e'")
        rolled_ns = cursor.fetchone()
        cursor.execute("SELECT count(*), sum(cpu_seconds) FROM metrics_podsample WHERE namespace = 'e2e'")
        raw_ns = cursor.fetchone()
        assert rolled_ns[0] == raw_ns[0] == 2 * batches
        assert rolled_ns[1] == pytest.approx(raw_ns[1], rel=1e-9)
