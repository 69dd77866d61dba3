"""Dashboard benchmark: the pods table and the overview with thousands of running pods.

    python bench/dashboard.py [--database km_bench_dashboard] [--pods 5000] [--reps 20] [--tiny]

Creates its database afresh (dropped first), with --pods pods in 20 namespaces on pods/50 nodes,
each with its newest sample 10 s old (what "running now" means to the table), then times full
requests through Django's test client, logged in: the pods table sorted by name (page 1 and a
middle page), sorted by CPU and by memory (every matching pod's newest sample is read and
sorted), filtered by namespace and by text, and the overview page (its top pods are the same
CPU sort). Prints p50 / p95 / max in milliseconds per case and the worst p95.
Goal: p95 <= 300 ms at 5,000 pods.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_fresh_database(server: str, database: str) -> None:
    import psycopg

    with psycopg.connect(f"{server.replace('postgres://', 'postgresql://')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def load(pods: int) -> None:
    from django.utils import timezone

    from metrics.models import Node, Pod, PodSample

    now = timezone.now()
    nodes = Node.objects.bulk_create(
        Node(name=f"node-{i:03d}", first_seen=now, last_seen=now, cpu_capacity_cores=16.0,
             memory_total_bytes=64 * 2**30)
        for i in range(max(1, pods // 50))
    )
    rows = Pod.objects.bulk_create(
        (
            Pod(uid=str(uuid.uuid4()), name=f"app-{i % 250:03d}-{i:05d}", namespace=f"ns-{i % 20:02d}",
                node=nodes[i % len(nodes)], deployment=f"app-{i % 250:03d}", owner_kind="ReplicaSet",
                owner_name=f"app-{i % 250:03d}-5d9c7b8f6", cpu_limit_cores=1.0, memory_limit_bytes=2**30,
                first_seen=now - timedelta(hours=1), last_seen=now)
            for i in range(pods)
        ),
        batch_size=2000,
    )
    PodSample.objects.bulk_create(
        (
            PodSample(pod=p, node_id=p.node_id, namespace=p.namespace, deployment=p.deployment,
                      time=now - timedelta(seconds=20), interval_seconds=10.0,
                      cpu_seconds=(i % 97) / 97 * 10.0, memory_working_set_bytes=(i % 89 + 1) * 2**22,
                      cpu_limit_cores=1.0, memory_limit_bytes=2**30)
            for i, p in enumerate(rows)
        ),
        batch_size=2000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="km_bench_dashboard")
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="50 pods, 3 repetitions (checks the bench still runs)")
    args = parser.parse_args()
    if args.tiny:
        args.pods, args.reps = 50, 3
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kubemonitor")
    server = url.rsplit("/", 1)[0]
    ensure_fresh_database(server, args.database)
    os.environ["DATABASE_URL"] = f"{server}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    call_command("migrate", verbosity=0)
    t0 = time.monotonic()
    load(args.pods)
    with connection.cursor() as cur:
        cur.execute("ANALYZE metrics_pod")
        cur.execute("ANALYZE metrics_podsample")
    print(f"pods loaded: {args.pods} in {time.monotonic() - t0:.1f} s")
    client = Client()
    client.force_login(User.objects.create_user("bench"))
    middle = max(1, args.pods // 100)
    cases = [
        ("pods by name, page 1", "/pods/"),
        (f"pods by name, page {middle}", f"/pods/?page={middle}"),
        ("pods by CPU", "/pods/?sort=-cpu"),
        ("pods by memory", "/pods/?sort=-memory"),
        ("pods of a namespace by CPU", "/pods/?namespace=ns-03&sort=-cpu"),
        ("pods by text", "/pods/?q=app-007"),
        ("overview page", "/"),
    ]
    print(f"{'case':<32} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    worst = 0.0
    for label, path in cases:
        client.get(path, HTTP_HOST="localhost")  # warm-up
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            response = client.get(path, HTTP_HOST="localhost")
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        worst = max(worst, p95)
        print(f"{label:<32} {len(times):>4} {statistics.median(times):>8.1f} {p95:>8.1f} {times[-1]:>8.1f}")
    print(f"worst p95: {worst:.1f} ms (goal <= 300 ms at 5,000 pods)")


if __name__ == "__main__":
    main()
