"""End to end with the real API: collector -> gunicorn + Django -> PostgreSQL -> rollups.

The collector's real agent loop (`python -m collector`, 2 s interval, with a spool) posts to the
real API server, started as a subprocess against the pytest-django test database. It runs over
two nodes in turn: a simulated node (simnode.py: real v1 pod cgroups with a CPU burner and a
memory holder; skipped where the kernel does not allow it) and the captured cgroup v1 node from
the fixtures (runs anywhere). The server is stopped for a few cycles and started again; the
batches made meanwhile wait in the spool and are replayed in order. Then every batch the
collector made (its log says which) must be stored exactly once, with its pod and container
rows, and the rollups (after `refreshrollups`, and once every bucket is materialized) must sum to
exactly the raw sums.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from collector.tests import simnode
from collector.tests.fixture_node import FIXTURES
from collector.tests.simnode import SimNode, SimPod
from metrics import backend, rollups
from metrics.models import ContainerSample, Node, NodeSample, Pod, PodSample
from metrics.tests.factories import reset_rollups
from metrics.tests.gunicorn_server import database_url_of_test_db as database_url
from metrics.tests.gunicorn_server import free_port
from metrics.tokens import create_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 2.0
CPU_QUOTA = 0.2
BATCH_LOG = re.compile(r"collector\.agent batch (\S+): (\d+) pods")


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


@dataclass
class NodeUnderTest:
    name: str
    # Collector flags that point it at this node (roots, pod log dir).
    args: list[str]
    # uid -> (name, namespace, workload containers) of the pods it must report.
    pods: dict[str, tuple[str, str, int]]
    # pod uid -> cumulative CPU ns from the kernel, where the node is real.
    cpu_ns: Callable[[str], int] | None = None


@pytest.fixture(params=["simulated", "captured"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeUnderTest]:
    """The simulated node with real workloads (where the kernel allows it), and the captured
    cgroup v1 node from the fixtures (its counters do not move, but it runs anywhere)."""
    if request.param == "captured":
        yield fixture_node(tmp_path)
        return
    reason = simnode.why_unsupported(tmp_path)
    if reason is not None:
        pytest.skip(f"no simulated node here: {reason}")
    sim = SimNode(tmp_path)
    try:
        burner, holder = start_workloads(sim)
        pods = {p.uid: (p.name, p.namespace, 1) for p in (burner, holder)}
        by_uid = {p.uid: p for p in (burner, holder)}
        yield NodeUnderTest(
            f"e2e-{sim.run_id}", ["--pod-log-dir", str(sim.pod_log_dir)], pods,
            lambda uid: int(sim.read("cpuacct", by_uid[uid].cgroup, "cpuacct.usage")))
    finally:
        problems = sim.close()
        assert not problems, f"simulated node not fully cleaned up: {problems}"


def fixture_node(tmp_path: Path) -> NodeUnderTest:
    tree = tmp_path / "node"
    shutil.copytree(FIXTURES / "v1-cgroupfs" / "t1", tree, symlinks=True)
    pods: dict[str, tuple[str, str, int]] = {}
    for entry in (tree / "var" / "log" / "pods").iterdir():
        namespace, name, uid = entry.name.split("_")
        pods[uid] = (name, namespace, sum(1 for c in entry.iterdir() if c.is_dir()))
    return NodeUnderTest(
        f"e2e-fixture-{uuid.uuid4().hex[:6]}",
        ["--proc-root", str(tree / "proc"), "--sys-root", str(tree / "sys"),
         "--pod-log-dir", str(tree / "var" / "log" / "pods")],
        pods,
    )


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


def test_batches_survive_an_api_outage_exactly_once_and_roll_up_to_the_raw_sums(
    api: ApiServer, node: NodeUnderTest, tmp_path: Path
) -> None:
    reset_rollups()
    _, token = create_token(node.name)
    node_name = node.name
    spool = tmp_path / "spool"
    log_path = tmp_path / "collector.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KUBEMONITOR_") and k not in ("NODE_NAME", "KUBERNETES_SERVICE_HOST")}
    kernel_at_start = {uid: node.cpu_ns(uid) for uid in node.pods} if node.cpu_ns else {}
    with log_path.open("w") as log:
        collector = subprocess.Popen(
            [sys.executable, "-m", "collector", "--api-url", api.url, "--token", token,
             "--interval", str(INTERVAL), "--node-name", node_name, "--spool-dir", str(spool),
             *node.args, "--metadata", "podlogs", "--log-level", "DEBUG"],
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
    for end, pod_count in produced.items():
        start = parse_time(end) - timedelta(seconds=INTERVAL)
        assert PodSample.objects.filter(node=node_row, time=start).count() == pod_count, end
    for uid, (name, namespace, containers) in node.pods.items():
        assert (pods[uid].name, pods[uid].namespace) == (name, namespace)
        assert PodSample.objects.filter(pod=pods[uid]).count() == len(produced)
        # One row per workload container and batch; never the pause container.
        assert ContainerSample.objects.filter(pod=pods[uid]).count() == containers * len(produced)
        if node.cpu_ns is not None:
            # Nothing doubled shows in the CPU too: never more than the kernel counted meanwhile.
            stored = sum(r.cpu_seconds for r in PodSample.objects.filter(pod=pods[uid]))
            counted = (node.cpu_ns(uid) - kernel_at_start[uid]) / 1e9
            assert stored <= counted + 1e-6, (name, stored, counted)
    if node.cpu_ns is not None:
        assert any(r.cpu_seconds > 0 for r in PodSample.objects.filter(node=node_row))

    # -- rollups equal the raw sums ------------------------------------------------------------------
    # The command, now: the newest minute is still read live from raw rows through the views.
    call_command("refreshrollups", "--once", "--skip-retention")
    namespaces = sorted({namespace for _, namespace, _ in node.pods.values()})
    assert_rollups_equal_raw(node_row.id, len(produced), namespaces)
    if backend.storage_tier() == "tsl":
        # TimescaleDB moves a continuous aggregate's watermark to the end of the refreshed window
        # and never back: refreshing "as if 3 minutes later" would hide the raw rows of the next
        # minutes (from the next test, say) until a later refresh. The real-time read above is
        # what a user sees; the policies materialize later on their own.
        return
    # And as the next refreshes will see it once time has passed: every bucket materialized.
    result = rollups.refresh(now=max(stored_ends) + timedelta(minutes=3))
    assert result.skipped is None, result.skipped
    assert result.rows_1m > 0
    assert_materialized_through(max(stored_ends))
    assert_rollups_equal_raw(node_row.id, len(produced), namespaces)


def assert_materialized_through(moment: datetime) -> None:
    if backend.storage_tier() == "tsl":
        return  # continuous aggregates: TimescaleDB keeps its own watermark
    state = rollups.state()
    assert state["materialized_1m"] is not None and state["materialized_1m"] >= moment, state


def assert_rollups_equal_raw(node_id: int, batches: int, namespaces: list[str]) -> None:
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
        for namespace in namespaces:
            cursor.execute(
                "SELECT sum(samples), sum(cpu_seconds), sum(memory_working_set_byte_seconds) "
                "FROM metrics_rollup_namespace_1m WHERE namespace = %s", [namespace])
            rolled_ns = cursor.fetchone()
            cursor.execute(
                "SELECT count(*), sum(cpu_seconds), sum(memory_working_set_bytes * interval_seconds) "
                "FROM metrics_podsample WHERE namespace = %s", [namespace])
            raw_ns = cursor.fetchone()
            assert rolled_ns[0] == raw_ns[0] > 0, namespace
            assert rolled_ns[1] == pytest.approx(raw_ns[1], rel=1e-9), namespace
            assert rolled_ns[2] == pytest.approx(raw_ns[2], rel=1e-9), namespace
