"""Read benchmark: namespace and Deployment series over 1 h, 24 h and 7 d, from rollups and raw.

    python bench/query.py [--database km_bench_query] [--reps 50] [--raw-reps 10] [--fresh] [--days 7]

1. Loads 7 days of 10 s samples for 500 pods (10 namespaces, 5 Deployments of 9 pods each per
   namespace, plus 5 standalone pods per namespace, on 20 nodes) and their nodes' samples into
   its own database with COPY: ~30.2 M pod rows and 1.2 M node rows. Each day is one
   transaction recorded in a progress table, so an interrupted load resumes where it stopped and
   a loaded database is reused (--fresh drops it and starts over). Values vary per pod and time.
2. Refreshes the rollups with metrics.rollups.refresh() (the code behind `refreshrollups`).
3. Times metrics.series.series() — the query the API's detail views run — for each
   namespace / Deployment and window: from the rollups (1 h: step 60 on the 1-minute rollups;
   24 h: step 300 on the 1-minute rollups; 7 d: step 3600 on the 1-hour rollups) and from raw
   samples at the same steps. Repetitions rotate over the 10 namespaces / 50 Deployments.
   Prints p50 / p95 / max in milliseconds per case, then full HTTP requests through Django's
   test client for comparison: a namespace detail per window and the four list endpoints (their
   latest-usage lookups find nothing here, since the data ends before now). Goal: p95 <= 50 ms
   from rollups.
4. Times one `/api/series/?kind=deployment` request for every Deployment (50) over the last 24 h
   at the auto step (300 s, from the 1-minute rollups), the dashboard's and alert evaluation's
   read, through Django's test client (auth, view, series_many, serialization, JSON), with every
   point field and with the two the dashboard asks for (`fields=`). Goal: p95 <= 150 ms.
5. Times /api/summary/ and /api/statistics/?hours=24 as their views build and render them,
   30 s after the data ends. Goal: p95 <= 100 ms. Then, for scale, the right-sizing list over a
   day and one Deployment's right-sizing over a week.

The data ends at the full hour before the first load (kept in the database), so every window is
fully materialized and a rerun days later measures the same data (raw retention is lifted for
this process so refresh never drops it).
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

NAMESPACES = 10
DEPLOYMENTS_PER_NAMESPACE = 5
PODS_PER_DEPLOYMENT = 9
STANDALONE_PER_NAMESPACE = 5
NODES = 20
INTERVAL = 10
DAYS = 7
SPAN = timedelta(days=1)  # loaded per transaction ("day"); --tiny loads one hour instead
VARIANTS = 61  # distinct value rows per pod, cycled (prime, so pods drift against each other)


def tiny() -> None:
    """One namespace, one Deployment of 2 pods on one node, one hour of samples."""
    global NAMESPACES, DEPLOYMENTS_PER_NAMESPACE, PODS_PER_DEPLOYMENT, STANDALONE_PER_NAMESPACE
    global NODES, DAYS, SPAN
    NAMESPACES, DEPLOYMENTS_PER_NAMESPACE, PODS_PER_DEPLOYMENT = 1, 1, 2
    STANDALONE_PER_NAMESPACE, NODES, DAYS, SPAN = 0, 1, 1, timedelta(hours=1)


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
    os.environ.setdefault("DEBUG", "1")
    # The data is older than raw retention when rerun later; nothing here may delete it.
    os.environ["RETENTION_RAW_DAYS"] = "3650"
    os.environ["RETENTION_1M_DAYS"] = "3650"
    os.environ["RETENTION_1H_DAYS"] = "3650"
    import django

    django.setup()


def ensure_database(database: str, fresh: bool) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


# --- loading -------------------------------------------------------------------------------------


def _inventory(anchor: datetime) -> tuple[list, list]:
    from metrics.models import Node, Pod

    first = anchor - DAYS * SPAN
    if not Node.objects.exists():
        Node.objects.bulk_create(
            Node(
                name=f"worker-{i:02d}.bench.internal", first_seen=first, last_seen=anchor,
                cpu_capacity_cores=16.0, memory_total_bytes=64 * 1024**3,
            )
            for i in range(NODES)
        )
    nodes = list(Node.objects.order_by("name"))
    if not Pod.objects.exists():
        pods = []
        n = 0
        for ns in range(NAMESPACES):
            namespace = f"team-{ns:02d}"
            for dep in range(DEPLOYMENTS_PER_NAMESPACE):
                for p in range(PODS_PER_DEPLOYMENT):
                    pods.append((namespace, f"svc-{dep}", f"svc-{dep}-7d9f8c6b5-{p:05d}", n))
                    n += 1
            for p in range(STANDALONE_PER_NAMESPACE):
                pods.append((namespace, None, f"job-{p}", n))
                n += 1
        Pod.objects.bulk_create(
            Pod(
                uid=f"bench-{i:04d}", name=name, namespace=namespace, node=nodes[i % NODES],
                owner_kind="ReplicaSet" if dep else "Job", owner_name=dep or name,
                deployment=dep, qos="Burstable", labels={"app": dep or name},
                cpu_limit_cores=1.0 if i % 2 else None,
                memory_limit_bytes=(512 * 1024**2) if i % 3 else None,
                first_seen=first, last_seen=anchor,
            )
            for namespace, dep, name, i in pods
        )
    return nodes, list(Pod.objects.order_by("uid"))


def _pod_variants(pod, k: int) -> list[str]:
    """VARIANTS tab-separated value tails for one pod (cpu, memory, disk, net, limits)."""
    rows = []
    dep = pod.deployment if pod.deployment is not None else r"\N"
    cpu_limit = r"\N" if pod.cpu_limit_cores is None else repr(pod.cpu_limit_cores)
    mem_limit = r"\N" if pod.memory_limit_bytes is None else str(pod.memory_limit_bytes)
    for v in range(VARIANTS):
        x = (v * 17 + k * 7) % VARIANTS
        cpu = INTERVAL * (0.02 + 0.004 * x + 0.01 * (k % 5))
        mem = (80 + 3 * x + 10 * (k % 7)) * 1024 * 1024
        rows.append(
            f"{pod.id}\t{pod.node_id}\t{pod.namespace}\t{dep}\t{cpu:.4f}\t{mem}\t"
            f"{1000 * x}\t{400 * (x + 1)}\t{2000 * x + k}\t{900 * x}\t{cpu_limit}\t{mem_limit}\n"
        )
    return rows


POD_COLUMNS = (
    "time, interval_seconds, pod_id, node_id, namespace, deployment, cpu_seconds, "
    "memory_working_set_bytes, disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes, "
    "cpu_limit_cores, memory_limit_bytes"
)
NODE_COLUMNS = (
    "time, interval_seconds, node_id, cpu_seconds, memory_working_set_bytes, disk_read_bytes, "
    "disk_write_bytes, net_rx_bytes, net_tx_bytes, cpu_capacity_cores, memory_total_bytes"
)


def _load_day(conn, day_start: datetime, nodes: list, pods: list) -> int:
    variants = [_pod_variants(p, k) for k, p in enumerate(pods)]
    steps = int(SPAN.total_seconds() / INTERVAL)
    rows = 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY metrics_podsample ({POD_COLUMNS}) FROM STDIN") as copy:
            for i in range(steps):
                t = (day_start + timedelta(seconds=i * INTERVAL)).strftime("%Y-%m-%d %H:%M:%S+00")
                head = f"{t}\t{INTERVAL}\t"
                chunk = "".join(head + variants[k][(i + k) % VARIANTS] for k in range(len(pods)))
                copy.write(chunk)
                rows += len(pods)
        with cur.copy(f"COPY metrics_nodesample ({NODE_COLUMNS}) FROM STDIN") as copy:
            for i in range(steps):
                t = (day_start + timedelta(seconds=i * INTERVAL)).strftime("%Y-%m-%d %H:%M:%S+00")
                copy.write("".join(
                    f"{t}\t{INTERVAL}\t{n.id}\t{INTERVAL * (4 + (i + j) % 5)}\t{(20 + (i + j) % 9) * 1024**3}"
                    f"\t{10**6 * ((i + j) % 7)}\t{2 * 10**6}\t{5 * 10**6}\t{3 * 10**6}\t16.0\t{64 * 1024**3}\n"
                    for j, n in enumerate(nodes)
                ))
    return rows


def load(anchor: datetime) -> bool:
    """Load the days not loaded yet; return whether anything was loaded."""
    from django.db import connection

    nodes, pods = _inventory(anchor)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_loaded_day (day timestamptz PRIMARY KEY, rows bigint, seconds float8)")
        cur.execute("SELECT day FROM bench_loaded_day")
        done = {r[0] for r in cur.fetchall()}
    conn = connection.connection  # the psycopg connection, for COPY
    loaded = False
    for d in range(DAYS):
        day_start = anchor - (DAYS - d) * SPAN
        if day_start in done:
            continue
        started = time.monotonic()
        with conn.transaction():
            rows = _load_day(conn, day_start, nodes, pods)
            seconds = time.monotonic() - started
            conn.execute(
                "INSERT INTO bench_loaded_day (day, rows, seconds) VALUES (%s, %s, %s)",
                [day_start, rows, seconds],
            )
        loaded = True
        print(f"  day {d + 1}/{DAYS} ({day_start:%Y-%m-%d %H:%M}): {rows:,} pod rows in {seconds:.1f} s "
              f"({rows / seconds:,.0f} rows/s)", flush=True)
    return loaded


def anchor_time() -> datetime:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value timestamptz)")
        cur.execute("SELECT value FROM bench_meta WHERE key = 'anchor'")
        row = cur.fetchone()
        if row:
            return row[0]
        now = datetime.now(timezone.utc)
        anchor = now.replace(minute=0, second=0, microsecond=0)
        cur.execute("INSERT INTO bench_meta VALUES ('anchor', %s)", [anchor])
        return anchor


# --- timing --------------------------------------------------------------------------------------


def time_case(kind: str, keys: list[tuple], window: timedelta, step: int, source: str,
              anchor: datetime, reps: int, budget_s: float) -> list[float]:
    from metrics import series

    start = anchor - window
    w = series.Window(start=start, end=anchor, step=step, source=source)
    times = []
    deadline = time.monotonic() + budget_s
    for i in range(reps):
        entity = series.Entity(kind, keys[i % len(keys)])
        t0 = time.perf_counter()
        points = series.series(entity, w, now=anchor + timedelta(hours=1))
        times.append((time.perf_counter() - t0) * 1000)
        assert points and points[-1]["cpu_millicores"] is not None, (kind, source, points[-1])
        if time.monotonic() > deadline and len(times) >= 3:
            break
    return times


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))]


def main() -> None:
    global DAYS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="km_bench_query")
    parser.add_argument("--reps", type=int, default=50, help="repetitions per rollup case")
    parser.add_argument("--raw-reps", type=int, default=10, help="repetitions per raw case")
    parser.add_argument("--raw-budget", type=float, default=120.0, help="seconds at most per raw case")
    parser.add_argument("--fresh", action="store_true", help="drop the database and load again")
    parser.add_argument("--days", type=int, default=DAYS,
                        help="days of data to load (fewer loads quicker; the 7 d cases then read what there is)")
    parser.add_argument("--skip-refresh", action="store_true")
    parser.add_argument("--overview-only", action="store_true",
                        help="time only /api/summary/, /api/statistics/ and right-sizing (data loaded before)")
    parser.add_argument("--tiny", action="store_true",
                        help="a few seconds' smoke run: 2 pods x 1 hour, 3 repetitions (checks the bench still runs)")
    args = parser.parse_args()
    DAYS = args.days
    if args.tiny:
        tiny()
        args.reps, args.raw_reps = 3, 2

    ensure_database(args.database, args.fresh)
    setup_django(args.database)
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from metrics import backend, rollups

    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    call_command("migrate", verbosity=0)
    print(f"database {args.database}, storage tier: {backend.storage_tier()}")
    anchor = anchor_time()
    print(f"data: {DAYS * SPAN} of {INTERVAL} s samples ending {anchor:%Y-%m-%d %H:%M} UTC")
    t0 = time.monotonic()
    loaded = load(anchor)
    if loaded:
        print(f"loaded in {time.monotonic() - t0:.0f} s")
        with connection.cursor() as cur:
            cur.execute("ANALYZE metrics_podsample")
            cur.execute("ANALYZE metrics_nodesample")
    with connection.cursor() as cur:
        cur.execute("SELECT sum(rows), sum(seconds) FROM bench_loaded_day")
        rows, seconds = cur.fetchone()
    print(f"pod rows loaded: {int(rows):,} (load time {seconds:.0f} s in total)")

    if not args.skip_refresh:
        t0 = time.monotonic()
        result = rollups.refresh(since=anchor - DAYS * SPAN if loaded else None)
        print(f"rollups refreshed in {time.monotonic() - t0:.1f} s: {result.summary()}")
        if backend.storage_tier() != "tsl":
            with connection.cursor() as cur:
                for entity in ("node", "pod", "namespace", "deployment"):
                    for resolution in ("1m", "1h"):
                        cur.execute(f"ANALYZE metrics_rollup_{entity}_{resolution}_mat")

    from metrics.models import Pod

    if args.overview_only:
        print(f"\nload average before timing: {os.getloadavg()}")
        overview = time_overview(anchor, args.reps)
        time_rightsizing(anchor, min(args.reps, 5))
        worst_overview = max(pct(t, 0.95) for t in overview.values())
        print(f"worst p95 summary / statistics: {worst_overview:.1f} ms (goal <= 100 ms): "
              f"{'met' if worst_overview <= 100 else 'NOT met'}")
        print(f"load average after: {os.getloadavg()}")
        return

    namespaces = sorted({(ns,) for ns in Pod.objects.values_list("namespace", flat=True)})
    deployments = sorted(set(Pod.objects.exclude(deployment=None).values_list("namespace", "deployment")))
    cases = [
        ("1 h", timedelta(hours=1), 60),
        ("24 h", timedelta(hours=24), 300),
        ("7 d", timedelta(days=7), 3600),
    ]
    print(f"\nload average before timing: {os.getloadavg()}")
    print(f"{'case':<34} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    results = {}
    for kind, keys in (("namespace", namespaces), ("deployment", deployments)):
        for label, window, step in cases:
            for source in (series_source(step), "raw"):
                reps = args.reps if source != "raw" else args.raw_reps
                budget = 600.0 if source != "raw" else args.raw_budget
                # One untimed run warms the plan cache and the connection.
                time_case(kind, keys, window, step, source, anchor, 1, budget)
                times = time_case(kind, keys, window, step, source, anchor, reps, budget)
                name = f"{kind} {label} step {step} from {source}"
                results[name] = times
                print(f"{name:<34} {len(times):>4} {statistics.median(times):>9.1f} "
                      f"{pct(times, 0.95):>9.1f} {max(times):>9.1f}", flush=True)

    # The whole HTTP path once per window, for scale (auth, view, serialization, JSON).
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    for label, window, step in cases:
        url = f"/api/namespaces/{namespaces[0][0]}/"
        params = {"start": (anchor - window).isoformat(), "end": anchor.isoformat(), "step": step}
        client.get(url, params, HTTP_HOST="localhost")
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            response = client.get(url, params, HTTP_HOST="localhost")
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.content[:300]
        print(f"{'HTTP namespace ' + label + ' step ' + str(step):<34} {len(times):>4} "
              f"{statistics.median(times):>9.1f} {pct(times, 0.95):>9.1f} {max(times):>9.1f}")

    # Lists: inventory page plus one latest-usage query for the page's items.
    for url in ("/api/nodes/", "/api/pods/?limit=100", "/api/namespaces/", "/api/deployments/"):
        client.get(url, HTTP_HOST="localhost")
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            response = client.get(url, HTTP_HOST="localhost")
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.content[:300]
        print(f"{'HTTP list ' + url:<34} {len(times):>4} {statistics.median(times):>9.1f} "
              f"{pct(times, 0.95):>9.1f} {max(times):>9.1f}")

    many = time_many_deployments(client, anchor, len(deployments), args.reps)
    print(f"{'HTTP series ' + str(len(deployments)) + ' Deployments 24 h':<34} {len(many):>4} "
          f"{statistics.median(many):>9.1f} {pct(many, 0.95):>9.1f} {max(many):>9.1f}")
    few = time_many_deployments(client, anchor, len(deployments), args.reps, fields=DASHBOARD_FIELDS)
    print(f"{'  the same, fields=cpu,memory':<34} {len(few):>4} "
          f"{statistics.median(few):>9.1f} {pct(few, 0.95):>9.1f} {max(few):>9.1f}")
    overview = time_overview(anchor, args.reps)
    time_rightsizing(anchor, min(args.reps, 5))

    worst = max(pct(t, 0.95) for n, t in results.items() if not n.endswith("raw"))
    print(f"\nworst p95 from rollups: {worst:.1f} ms (goal <= 50 ms): {'met' if worst <= 50 else 'NOT met'}")
    many_p95 = pct(many, 0.95)
    print(f"one /api/series/ request for {len(deployments)} Deployments over 24 h: p95 {many_p95:.1f} ms "
          f"(goal <= 150 ms): {'met' if many_p95 <= 150 else 'NOT met'}; with fields=cpu,memory: "
          f"p95 {pct(few, 0.95):.1f} ms")
    worst_overview = max(pct(t, 0.95) for t in overview.values())
    print(f"worst p95 summary / statistics: {worst_overview:.1f} ms (goal <= 100 ms): "
          f"{'met' if worst_overview <= 100 else 'NOT met'}")
    print(f"load average after: {os.getloadavg()}")

# What the dashboard's sparklines ask for.
DASHBOARD_FIELDS = "cpu_millicores,memory_working_set_bytes"


def time_many_deployments(client, anchor: datetime, expected: int, reps: int, fields: str = "") -> list[float]:
    """One /api/series/ request for every Deployment over the 24 h before the data's end (every
    point field, or `fields`)."""
    params = {
        "kind": "deployment", "start": (anchor - timedelta(hours=24)).isoformat(), "end": anchor.isoformat(),
    }
    if fields:
        params["fields"] = fields
    client.get("/api/series/", params, HTTP_HOST="localhost")  # warm the plan cache
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        response = client.get("/api/series/", params, HTTP_HOST="localhost")
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        assert len(body["series"]) == expected and body["source"] == "1m", (len(body["series"]), body["source"])
        last = body["series"][0]["points"][-1]
        assert last["cpu_millicores"] is not None, last
    return times


def time_overview(anchor: datetime, reps: int) -> dict[str, list[float]]:
    """/api/summary/ and /api/statistics/?hours=24 as their views build and render them, at a
    moment 30 s after the data ends (the HTTP path would look at the real now, past the data)."""
    from rest_framework.renderers import JSONRenderer

    from metrics import statistics as hourly, summary
    from metrics.api.summary import SummarySerializer

    now = anchor + timedelta(seconds=30)
    render = JSONRenderer().render
    # What each view does: build, serialize (summary) and render to JSON.
    cases = {
        "summary /api/summary/": lambda: render(SummarySerializer(summary.summary(now)).data),
        "statistics ?hours=24": lambda: render(hourly.statistics(24, now=now)),
    }
    results = {}
    for name, call in cases.items():
        data = call()  # one untimed run warms the plan cache
        assert data, name
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        results[name] = times
        print(f"{name:<34} {len(times):>4} {statistics.median(times):>9.1f} "
              f"{pct(times, 0.95):>9.1f} {max(times):>9.1f}", flush=True)
    return results


def time_rightsizing(anchor: datetime, reps: int) -> None:
    """The cluster-wide right-sizing list over a day and one Deployment over a week, for scale
    (no goal): percentiles over every replica-minute of the 1-minute rollup."""
    from metrics import rightsizing
    from metrics.models import Pod

    now = anchor + timedelta(seconds=30)
    dep = Pod.objects.exclude(deployment=None).values_list("namespace", "deployment").first()
    cases = {
        "rightsizing list 24 h": lambda: rightsizing.waste_list(86400, now=now),
        "rightsizing Deployment 7 d": lambda: rightsizing.for_pods(
            Pod.objects.filter(namespace=dep[0], deployment=dep[1]), 7 * 86400, now=now
        ),
    }
    for name, call in cases.items():
        call()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        print(f"{name:<34} {len(times):>4} {statistics.median(times):>9.1f} "
              f"{pct(times, 0.95):>9.1f} {max(times):>9.1f}", flush=True)


def series_source(step: int) -> str:
    from metrics import series

    return series.source_for_step(step)


if __name__ == "__main__":
    main()
