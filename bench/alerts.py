"""Alert evaluation benchmark: 20 rules over 10,000 pods, time per cycle.

    python bench/alerts.py [--database km_bench_alerts] [--pods 10000] [--cycles 5] [--tiny]

1. Creates its own database (dropped first), migrates, and loads 100 nodes, 10,000 pods with one
   container each (5 % over their CPU limit's 80 %, 2 % Pending, 1 % crash-looping) and 11 minutes
   of 10 s pod and container samples (~660,000 rows each) with COPY, ending at a fixed moment.
2. Replaces the default rules with 20 rules over the catalogue's metrics (pods, Deployments,
   namespaces, nodes; windows of 1 to 10 minutes).
3. Runs `--cycles` evaluation cycles (metrics.alerts.evaluate.run_cycle, the code behind
   `evaluatealerts`) at that moment and prints each cycle's time; the first creates the alerts,
   the next ones are the steady state (every alert updated). Then the slowest rules of the last
   cycle, and the machine's load average. Goal: a steady cycle <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INTERVAL = 10
MINUTES = 11
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

# (metric, level, comparison, threshold, window minutes): 20 rules.
RULES = [
    ("cpu_percent_of_limit", "pod", ">", 80, 1), ("memory_percent_of_limit", "pod", ">", 80, 1),
    ("gpu_utilization_percent", "pod", ">", 90, 1), ("pod_phase_not_running", "pod", ">", 0, 1),
    ("node_not_reporting", "node", ">=", 3, 1), ("containers_waiting", "pod", ">", 0, 1),
    ("oom_kills", "pod", ">", 0, 10), ("restarts", "pod", ">", 2, 10),
    ("cpu_percent_of_request", "pod", ">", 150, 5), ("memory_percent_of_request", "pod", ">", 150, 5),
    ("cpu_percent_of_node", "pod", ">", 50, 1), ("memory_percent_of_node", "pod", ">", 25, 1),
    ("cpu_throttled_percent", "pod", ">", 25, 5), ("psi_cpu_some_percent", "pod", ">", 20, 5),
    ("pod_not_ready", "pod", ">", 0, 1), ("cpu_percent_of_limit", "deployment", ">", 70, 5),
    ("memory_percent_of_limit", "namespace", ">", 70, 5), ("cpu_percent_of_node", "node", ">", 90, 1),
    ("psi_memory_some_percent", "node", ">", 10, 5), ("restarts", "namespace", ">", 10, 10),
]


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["RETENTION_RAW_DAYS"] = "3650"
    import django

    django.setup()


def create_database(database: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def load(pods: int, nodes: int) -> tuple[int, int]:
    from django.db import connection

    from metrics.models import Container, Node, Pod

    node_rows = [Node(name=f"node-{n:03d}", first_seen=NOW - timedelta(days=1), last_seen=NOW - timedelta(seconds=5),
                      cpu_capacity_cores=32.0, memory_total_bytes=128 * 2**30, interval_seconds=INTERVAL)
                 for n in range(nodes)]
    node_rows[-1].last_seen = NOW - timedelta(minutes=5)  # one node not reporting
    Node.objects.bulk_create(node_rows)
    node_ids = list(Node.objects.order_by("id").values_list("id", flat=True))
    pod_rows = []
    for i in range(pods):
        namespace = f"ns-{i % 20}"
        pod_rows.append(Pod(
            uid=f"uid-{i}", name=f"pod-{i}", namespace=namespace, node_id=node_ids[i % nodes],
            deployment=f"dep-{i % 200}", labels={"app": f"app-{i % 50}"}, cpu_limit_cores=1.0,
            memory_limit_bytes=2**30, cpu_request_cores=0.5, memory_request_bytes=2**29,
            phase="Pending" if i % 50 == 1 else "Running", ready=not (i % 50 == 1 or i % 100 == 2),
            first_seen=NOW - timedelta(days=1), last_seen=NOW - timedelta(seconds=30),
        ))
    Pod.objects.bulk_create(pod_rows, batch_size=5000)
    pod_ids = list(Pod.objects.order_by("id").values_list("id", "node_id"))
    Container.objects.bulk_create([
        Container(pod_id=pid, name="app", container_id=f"containerd://{i:064x}", image="app:1",
                  state="waiting" if i % 100 == 2 else "running",
                  state_reason="CrashLoopBackOff" if i % 100 == 2 else None,
                  last_termination_reason="OOMKilled" if i % 200 == 3 else None,
                  last_termination_time=NOW - timedelta(minutes=2) if i % 200 == 3 else None,
                  first_seen=NOW - timedelta(days=1), last_seen=NOW)
        for i, (pid, _) in enumerate(pod_ids)
    ], batch_size=5000)
    container_ids = dict(Container.objects.values_list("pod_id", "id"))
    start = NOW - timedelta(minutes=MINUTES)
    steps = MINUTES * 60 // INTERVAL
    pod_count = container_count = 0
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        with cursor.copy(
            "COPY metrics_podsample (pod_id, node_id, time, interval_seconds, namespace, deployment, cpu_seconds, "
            "memory_working_set_bytes, cpu_limit_cores, memory_limit_bytes, cpu_request_cores, memory_request_bytes, "
            "cpu_throttled_periods, cpu_periods, oom_kills, psi_cpu_some_seconds, psi_memory_some_seconds, "
            "gpu_utilization_percent) FROM STDIN"
        ) as copy:
            # Time-major, as ingest writes them (one batch per node per interval).
            for s in range(steps):
                t = start + timedelta(seconds=s * INTERVAL)
                for i, (pid, nid) in enumerate(pod_ids):
                    hot = i % 20 == 0
                    copy.write_row((pid, nid, t, INTERVAL, f"ns-{i % 20}", f"dep-{i % 200}",
                                    INTERVAL * (0.9 if hot else 0.2 + 0.01 * (s % 7)), 2**28 + (s % 5) * 2**20,
                                    1.0, 2**30, 0.5, 2**29, s % 3, 100, 0, 0.01 * (s % 4), 0.0,
                                    95.0 if i % 500 == 0 else None))
                    pod_count += 1
        with cursor.copy(
            "COPY metrics_containersample (container_id, pod_id, time, interval_seconds, cpu_seconds, "
            "memory_working_set_bytes, restarts) FROM STDIN"
        ) as copy:
            for s in range(steps):
                t = start + timedelta(seconds=s * INTERVAL)
                for i, (pid, _) in enumerate(pod_ids):
                    restarts = 1 if i % 100 == 2 and s % 10 == 0 else 0
                    copy.write_row((container_ids[pid], pid, t, INTERVAL, 1.0, 2**28, restarts))
                    container_count += 1
        django_cursor.execute("ANALYZE")
    return pod_count, container_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="km_bench_alerts")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="100 pods on 2 nodes, 3 cycles (tests).")
    args = parser.parse_args()
    if args.tiny:
        args.pods, args.nodes, args.cycles = 100, 2, 3

    create_database(args.database)
    setup_django(args.database)
    from django.core.management import call_command

    from metrics.alerts.evaluate import run_cycle
    from metrics.alerts.models import AlertInstance, AlertRule

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    pod_rows, container_rows = load(args.pods, args.nodes)
    print(f"loaded {args.pods} pods on {args.nodes} nodes: {pod_rows} pod samples, {container_rows} container "
          f"samples in {time.perf_counter() - started:.1f} s")
    AlertRule.objects.all().delete()
    for n, (metric, level, comparison, threshold, window) in enumerate(RULES):
        AlertRule.objects.create(name=f"rule-{n:02d}-{metric}-{level}", metric=metric, level=level,
                                 comparison=comparison, threshold=threshold, window=timedelta(minutes=window),
                                 for_duration=timedelta(minutes=5), summary="{entity}: {value:.1f}")
    print(f"rules: {AlertRule.objects.count()}")
    times = []
    result = None
    load_before = os.getloadavg()
    for cycle in range(args.cycles):
        t0 = time.perf_counter()
        result = run_cycle(NOW)
        times.append(time.perf_counter() - t0)
        print(f"cycle {cycle + 1}: {times[-1] * 1000:.0f} ms ({result.rules} rules, {result.pending} pending, "
              f"{result.errors or 'no errors'})")
    assert result is not None
    print(f"alerts: {AlertInstance.objects.count()}")
    for name, seconds in sorted(result.seconds.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {seconds * 1000:7.1f} ms  {name}")
    steady = times[1:] or times
    print(f"first cycle: {times[0] * 1000:.0f} ms")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} (1 min; {os.cpu_count()} CPUs)")
    print(f"steady cycle median: {statistics.median(steady) * 1000:.0f} ms, max {max(steady) * 1000:.0f} ms "
          f"(goal <= 1000 ms)")


if __name__ == "__main__":
    main()
