"""End-to-end ingest benchmark: gunicorn + POST /api/ingest/ vs raw binary COPY, same run, same tables.

    python bench/ingest.py [--duration 30] [--nodes 200] [--workers 2] [--worker-class sync|gthread]

1. Creates a fresh database (default km_bench_ingest; DROPPED if it exists), migrates it
   (TimescaleDB where the server has it) and creates a collector token.
2. Generates realistic 110-pod batches (2-3 containers per pod, Helm/Deployment labels) for many
   nodes and gzips them before the clock starts, so the load generator costs the server's cores
   almost nothing during the run. Posts them concurrently over keep-alive HTTP, interval after
   interval, for --duration seconds, after 1 + 2 x workers untimed warm-up intervals (first
   contact of every node writes its whole inventory, and each worker process has its own
   inventory cache; steady state is what a running cluster sees).
3. In the same run, raw binary COPY of the same rows (same pod and container ids, later intervals)
   into the same tables, one transaction per batch from as many processes as gunicorn workers,
   and once more with many batches per COPY: the ceiling.
4. Prints pod samples/s (each with its containers) end to end, the raw COPY figures and the ratio,
   the per-request breakdown from the Server-Timing header, and CPU seconds by process kind
   (postgres, gunicorn, this script).

`--profile N` instead runs N batches through the view in-process under cProfile (CPU time) and
prints the top functions; `--profile-server` runs the gunicorn workers themselves under cProfile;
`--phases N` prints the CPU of each phase of validation and writing, in Python and in PostgreSQL.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import http.client
import json
import multiprocessing
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metrics.tests.factories import NodeBatches, rfc3339  # noqa: E402

PLACEHOLDER = "__BENCH_TIME__"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- setup ----------------------------------------------------------------------------------------


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def fresh_database(name: str, env: dict[str, str]) -> str:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v", "0"], env=env, check=True)
    token = subprocess.run(
        manage + ["createcollectortoken", "bench"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    return token


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process: raw_rows and the COPY workers (forked from here) read the
    writer's column lists, and importing metrics.ingest.writer needs the settings."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
    import django

    django.setup()


def bytes_per_pod_sample(url: str) -> tuple[float, str]:
    """On-disk bytes per pod sample: pod and container sample tables with their indexes (and
    TOAST), over the pod samples stored; hypertable_size where the tables are hypertables."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        hyper = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()[0] and conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'metrics_podsample'"
        ).fetchone()[0]
        size = "hypertable_size" if hyper else "pg_total_relation_size"
        total = conn.execute(
            f"SELECT {size}('metrics_podsample') + {size}('metrics_containersample')"
        ).fetchone()[0]
        pods = conn.execute("SELECT count(*) FROM metrics_podsample").fetchone()[0]
        # Compression is a TSL feature; the Apache edition and plain PostgreSQL have none.
        licence = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()[0] if hyper else None
    compressed = "not measured (TSL present: compress chunks to measure)" if licence == "timescale" else "n/a (no TSL)"
    return total / max(pods, 1), compressed


def tier(url: str) -> str:
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        hypertables = 0
        if row:
            hypertables = conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables"
            ).fetchone()[0]
    return f"timescaledb {row[0]}, {hypertables} hypertables" if row else "plain PostgreSQL"


# --- batches --------------------------------------------------------------------------------------


def _template(args: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    node, pods = args
    batch = NodeBatches(node, pods=pods, seed=0).batch(datetime(2026, 1, 1, tzinfo=timezone.utc))
    batch["time"] = PLACEHOLDER
    return json.dumps(batch), batch


def _encode(args: tuple[str, str, int]) -> bytes:
    template, when, level = args
    return gzip.compress(template.replace(PLACEHOLDER, when).encode(), compresslevel=level)


def make_bodies(templates: list[str], ends: list[datetime], level: int) -> list[list[bytes]]:
    """bodies[interval][node], gzipped."""
    with multiprocessing.Pool() as pool:
        flat = pool.map(
            _encode, [(t, rfc3339(end), level) for end in ends for t in templates], chunksize=16
        )
    n = len(templates)
    return [flat[i * n : (i + 1) * n] for i in range(len(ends))]


# --- CPU accounting -------------------------------------------------------------------------------


def cpu_by_kind(gunicorn_pids: set[int], database: str) -> dict[str, float]:
    """CPU seconds (user + system) so far of postgres processes, gunicorn processes, everything."""
    totals: dict[str, float] = defaultdict(float)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        pid = int(entry)
        if comm == "postgres":
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    title = f.read().decode(errors="replace")
            except OSError:
                continue
            # Backends show their database in the process title; other engineers' test
            # databases share this server and are left out.
            if f" {database} " in title:
                totals["postgres (bench backends)"] += seconds
            elif title.startswith("postgres: 15/main: ") and ("writer" in title or "checkpointer" in title):
                totals["postgres (shared: wal, checkpoints)"] += seconds
        elif pid in gunicorn_pids:
            totals["gunicorn"] += seconds
    times = os.times()
    totals["bench (this script)"] = times.user + times.system
    return totals


def children_of(pid: int) -> set[int]:
    pids = {pid}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                pids.add(int(entry))
    return pids


def machine_cpu() -> tuple[float, float]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) / CLK_TCK, idle / CLK_TCK


# --- HTTP load ------------------------------------------------------------------------------------


class Poster(threading.Thread):
    def __init__(self, port: int, token: str, jobs: queue.Queue, results: list, deadline: list[float]):
        super().__init__(daemon=True)
        self.port, self.token, self.jobs, self.results, self.deadline = port, token, jobs, results, deadline

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        while True:
            try:
                body = self.jobs.get_nowait()
            except queue.Empty:
                return
            if time.perf_counter() > self.deadline[0]:
                return
            t0 = time.perf_counter()
            for attempt in range(3):
                try:
                    conn.request("POST", "/api/ingest/", body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    # gunicorn's sync workers close the connection after each response.
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            else:
                raise RuntimeError("the server stopped answering")
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.results.append(
                (response.status, time.perf_counter() - t0, response.getheader("Server-Timing", ""), payload)
            )


def post_all(port: int, token: str, bodies: list[bytes], concurrency: int, duration: float | None) -> tuple[list, float]:
    jobs: queue.Queue = queue.Queue()
    for body in bodies:
        jobs.put(body)
    results: list = []
    deadline = [float("inf")]
    threads = [Poster(port, token, jobs, results, deadline) for _ in range(concurrency)]
    start = time.perf_counter()
    if duration is not None:
        deadline[0] = start + duration
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def fixed_overhead(port: int, token: str, body: bytes, gunicorn_pids: set[int], database: str, n: int = 300) -> float:
    """gunicorn CPU per request that stops at the content type (415): HTTP, middleware, DRF, auth."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain", "Content-Encoding": "gzip"}
    before = cpu_by_kind(gunicorn_pids, database)["gunicorn"]
    for _ in range(n):
        conn.request("POST", "/api/ingest/", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    return (cpu_by_kind(gunicorn_pids, database)["gunicorn"] - before) / n


def start_gunicorn(env: dict[str, str], port: int, workers: int, worker_class: str, threads: int, profile_dir: str | None = None, gc_tuned: bool = False) -> subprocess.Popen:
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "monitor_site.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        # gunicorn silently turns sync workers into gthread ones when --threads > 1.
        "--threads", str(threads if worker_class == "gthread" else 1),
        "--keep-alive", "30",
        "--timeout", "120",
        "--log-level", "warning",
    ]
    if profile_dir or gc_tuned:
        cmd += ["--config", str(ROOT / "bench" / "gunicorn_conf.py")]
        env = dict(env)
        if profile_dir:
            env["KM_PROFILE_DIR"] = profile_dir
        if gc_tuned:
            env["KM_GC_TUNED"] = "1"
    # Its log (django.request warns on every 4xx, e.g. the 415s of fixed_overhead) goes to a file,
    # shown only when something failed.
    log = tempfile.NamedTemporaryFile(prefix="km-bench-gunicorn-", suffix=".log", delete=False)
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log.name  # type: ignore[attr-defined]
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/ingest/")
            c.getresponse().read()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("gunicorn did not start")


# --- raw COPY ceiling -----------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _raw_copy_worker(args: tuple[str, list[tuple[list, list]], list[datetime], int, float, Any]) -> tuple[int, int, int, float, float]:
    """COPY the rows of whole batches (one transaction each, or `group` batches per COPY)."""
    import psycopg

    from metrics.ingest.writer import (
        CONTAINER_COPY,
        CONTAINER_SAMPLE_TYPES,
        POD_COPY,
        POD_SAMPLE_TYPES,
    )

    url, nodes, starts, group, duration, barrier = args
    pods = containers = batches = 0
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        backend = conn.info.backend_pid
        barrier.wait()
        cpu0 = time.process_time() + process_cpu(backend)
        t0 = time.perf_counter()
        deadline = t0 + duration
        jobs = [(start, node) for start in starts for node in nodes]
        for i in range(0, len(jobs), group):
            if time.perf_counter() > deadline:
                break
            chunk = jobs[i : i + group]
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(POD_COPY) as copy:
                    copy.set_types(POD_SAMPLE_TYPES)
                    for start, (pod_rows, _) in chunk:
                        for head, tail in pod_rows:
                            copy.write_row((*head, start, *tail))
                        pods += len(pod_rows)
                with cur.copy(CONTAINER_COPY) as copy:
                    copy.set_types(CONTAINER_SAMPLE_TYPES)
                    for start, (_, container_rows) in chunk:
                        for head, tail in container_rows:
                            copy.write_row((*head, start, *tail))
                        containers += len(container_rows)
            batches += len(chunk)
        elapsed = time.perf_counter() - t0
        # This process and its PostgreSQL backend (gone from /proc once the connection closes).
        cpu = time.process_time() + process_cpu(backend) - cpu0
        return batches, pods, containers, elapsed, cpu


def raw_rows(url: str, batches: dict[str, dict[str, Any]]) -> dict[str, tuple[list, list]]:
    """Per node: pod and container sample rows (time left out) with the ids ingest assigned."""
    import psycopg

    from metrics.ingest.writer import CONTAINER_USAGE, POD_USAGE

    rows: dict[str, tuple[list, list]] = {}
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        pod_ids = dict(conn.execute("SELECT uid, id FROM metrics_pod").fetchall())
        node_ids = dict(conn.execute("SELECT name, id FROM metrics_node").fetchall())
        container_ids = {
            (p, n): i for i, p, n in conn.execute("SELECT id, pod_id, name FROM metrics_container").fetchall()
        }
    for node, batch in batches.items():
        interval = batch["interval_seconds"]
        pod_rows, container_rows = [], []
        for pod in batch["pods"]:
            pod_id = pod_ids[pod["uid"]]
            pod_rows.append(
                ((pod_id, node_ids[node]), (interval, pod["namespace"], pod["deployment"], *[pod.get(c) for c in POD_USAGE]))
            )
            for c in pod["containers"]:
                container_rows.append(
                    ((container_ids[(pod_id, c["name"])], pod_id), (interval, *[c.get(k) for k in CONTAINER_USAGE]))
                )
        rows[node] = (pod_rows, container_rows)
    return rows


def raw_copy(url: str, rows: dict[str, tuple[list, list]], first: datetime, interval: float, processes: int, group: int, duration: float, database: str) -> tuple[float, float, float, float]:
    """Returns (batches/s, pod samples/s, rows/s, CPU seconds per batch: client + PostgreSQL)."""
    shared0 = cpu_by_kind(set(), database)["postgres (shared: wal, checkpoints)"]
    nodes = list(rows.values())
    per = [nodes[i::processes] for i in range(processes)]
    # Enough intervals that no process runs out before the deadline; each later than any used so far.
    starts = [first + timedelta(seconds=interval * k) for k in range(4000)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(processes)
    with ctx.Pool(processes) as pool:
        results = pool.map(_raw_copy_worker, [(url, part, starts, group, duration, barrier) for part in per])
    shared = cpu_by_kind(set(), database)["postgres (shared: wal, checkpoints)"] - shared0
    seconds = max(r[3] for r in results)
    batches = sum(r[0] for r in results)
    pods = sum(r[1] for r in results)
    containers = sum(r[2] for r in results)
    cpu = sum(r[4] for r in results) + shared
    return batches / seconds, pods / seconds, (pods + containers) / seconds, cpu / batches


def compare_copy_formats(url: str, node_rows: tuple[list, list], repeat: int = 100) -> dict[str, tuple[float, float]]:
    """Text vs binary COPY of one batch's rows into index-less copies of the sample tables.

    Returns {format: (client CPU ms, wall ms) per batch}.
    """
    import psycopg

    from metrics.ingest.writer import (
        CONTAINER_SAMPLE_COLUMNS,
        CONTAINER_SAMPLE_TYPES,
        POD_SAMPLE_COLUMNS,
        POD_SAMPLE_TYPES,
    )

    pod_rows, container_rows = node_rows
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    result = {}
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        for table in ("podsample", "containersample"):
            conn.execute(f"CREATE TEMP TABLE bench_{table} (LIKE metrics_{table} INCLUDING DEFAULTS INCLUDING IDENTITY)")
        for fmt in ("TEXT", "BINARY", "TEXT", "BINARY"):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(repeat):
                with conn.transaction(), conn.cursor() as cur:
                    for table, columns, types, rows in (
                        ("podsample", POD_SAMPLE_COLUMNS, POD_SAMPLE_TYPES, pod_rows),
                        ("containersample", CONTAINER_SAMPLE_COLUMNS, CONTAINER_SAMPLE_TYPES, container_rows),
                    ):
                        with cur.copy(f"COPY bench_{table} ({', '.join(columns)}) FROM STDIN (FORMAT {fmt})") as copy:
                            if fmt == "BINARY":
                                copy.set_types(types)
                            for head, tail in rows:
                                copy.write_row((*head, start, *tail))
                conn.execute("TRUNCATE bench_podsample, bench_containersample")
            # The second round of each format is kept (the first warms caches).
            result[fmt] = ((time.process_time() - cpu0) / repeat * 1000, (time.perf_counter() - wall0) / repeat * 1000)
    return result


# --- report ---------------------------------------------------------------------------------------


def breakdown(results: list) -> list[tuple[str, float]]:
    sums: dict[str, list[float]] = defaultdict(list)
    for status, _, timing, _ in results:
        if status != 201:
            continue
        for part in timing.split(","):
            name, _, dur = part.strip().partition(";dur=")
            if dur:
                sums[name].append(float(dur))
    return [(name, statistics.fmean(values)) for name, values in sums.items()]


def run_profile(n: int, pods: int) -> None:
    import cProfile
    import pstats

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
    import django

    django.setup()
    from django.test import Client

    from metrics.ingest import writer
    from metrics.tokens import create_token

    token = create_token(f"profile-{time.time()}")[1]
    client = Client(HTTP_HOST="localhost")
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    gen = [NodeBatches(f"profile-{i}", pods=pods, seed=1) for i in range(4)]
    bodies = [gzip.compress(json.dumps(g.batch(base + timedelta(seconds=10 * k))).encode()) for k in range(n // 4 + 1) for g in gen][:n]

    def post_one(body: bytes) -> None:
        response = client.generic(
            "POST", "/api/ingest/", body, content_type="application/json",
            HTTP_CONTENT_ENCODING="gzip", HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 201, response.content
        writer._cache  # noqa: B018

    for body in bodies[:4]:  # warm the inventory cache
        post_one(body)
    # CPU time, not wall time: waiting for PostgreSQL (another process) is left out.
    profiler = cProfile.Profile(time.process_time)
    t0 = time.perf_counter()
    c0 = time.process_time()
    profiler.enable()
    for body in bodies[4:]:
        post_one(body)
    profiler.disable()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    n = len(bodies) - 4
    print(f"{n} batches in-process (1 thread, under cProfile): {elapsed / n * 1000:.2f} ms wall, {cpu / n * 1000:.2f} ms CPU per batch")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)


def run_phases(n: int, pods: int, gc_tuned: bool) -> None:
    """CPU per phase of parse_batch + writer.store, in this process and in its PostgreSQL backend."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
    import django

    django.setup()
    from django.db import connection

    from metrics.ingest import writer
    from metrics.ingest.schema import parse_batch

    nodes = [NodeBatches(f"phases-{i}", pods=pods, seed=1) for i in range(4)]
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
    now = datetime.now(timezone.utc)
    bodies = [gzip.compress(json.dumps(g.batch(base + timedelta(seconds=10 * k))).encode()) for k in range(n // 4 + 2) for g in nodes]
    for body in bodies[:4]:  # first contact: whole inventory, and the cache filled
        writer.store(parse_batch(gzip.decompress(body), now, timedelta(days=7)))
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    if gc_tuned:  # as bench/gunicorn_conf.py does in the workers
        import gc

        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
    python: dict[str, float] = defaultdict(float)
    database: dict[str, float] = defaultdict(float)
    timed = bodies[4 : 4 + n]
    for body in timed:
        c0 = time.process_time()
        raw = gzip.decompress(body)
        c1 = time.process_time()
        batch = parse_batch(raw, now, timedelta(days=7))
        c2 = time.process_time()
        python["gunzip"] += c1 - c0
        python["validate"] += c2 - c1
        for name, value in writer.store(batch, clock=time.process_time).timings.items():
            python[name] += value
    # The same batches once more (later intervals) with the backend's CPU as the clock.
    later = [gzip.compress(json.dumps(g.batch(base + timedelta(hours=1, seconds=10 * k))).encode()) for k in range(n // 4 + 1) for g in nodes][:n]
    for body in later:
        batch = parse_batch(gzip.decompress(body), now, timedelta(days=7))
        for name, value in writer.store(batch, clock=lambda: process_cpu(backend)).timings.items():
            database[name] += value
    print(
        f"CPU per batch over {len(timed)} batches of {pods} pods (steady state: inventory cached, last_seen "
        f"refreshed once a minute of batch time; garbage collector {'tuned' if gc_tuned else 'at its defaults'}):"
    )
    print(f"  {'phase':16s} {'python ms':>10s} {'postgres ms':>12s}")
    for name in ("gunzip", "validate", "node", "pods", "containers", "copy_pods", "copy_containers", "rollup_log", "commit"):
        print(f"  {name:16s} {python.get(name, 0) / len(timed) * 1000:10.2f} {database.get(name, 0) / len(later) * 1000:12.2f}")
    print(f"  {'total':16s} {sum(python.values()) / len(timed) * 1000:10.2f} {sum(database.values()) / len(later) * 1000:12.2f}")
    print("  (postgres figures come from /proc in steps of 10 ms, so they need a few hundred batches)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of timed HTTP load (and of raw COPY)")
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"], help="sync is what the image runs")
    parser.add_argument("--threads", type=int, default=2, help="threads per gthread worker")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--max-batches", type=int, default=6000, help="bodies prepared before the run")
    parser.add_argument("--gzip-level", type=int, default=6)
    parser.add_argument("--database", default="km_bench_ingest")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--profile", type=int, metavar="N", help="profile N batches in-process instead")
    parser.add_argument("--phases", type=int, metavar="N", help="CPU per phase (Python and PostgreSQL) over N batches in-process instead")
    parser.add_argument("--profile-server", action="store_true", help="run the gunicorn workers under cProfile and print where their CPU went")
    parser.add_argument("--gc-tuned", action="store_true", help="gc.freeze() and a higher generation-0 threshold in the workers (bench/gunicorn_conf.py)")
    parser.add_argument("--tiny", action="store_true", help="a few seconds' smoke run (4 nodes x 10 pods, 1 worker, 1 s phases): checks the bench still runs")
    parser.add_argument("--copy-format-repeat", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        args.nodes, args.pods, args.duration, args.max_batches = 4, 10, 1.0, 200
        args.workers, args.concurrency, args.copy_format_repeat = 1, 2, 5

    url = database_url(args.database)
    env = dict(os.environ, DATABASE_URL=url, DEBUG="0", SECRET_KEY="bench-only-not-secret", LOG_LEVEL="ERROR")
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}  (cores: {os.cpu_count()})")
    token = fresh_database(args.database, env)
    print(f"database {args.database}: {tier(url)}")

    if args.profile:
        os.environ.update(env)
        run_profile(args.profile, args.pods)
        return
    if args.phases:
        os.environ.update(env)
        run_phases(args.phases, args.pods, args.gc_tuned)
        return

    names = [f"bench-node-{i:04d}" for i in range(args.nodes)]
    with multiprocessing.Pool() as pool:
        generated = pool.map(_template, [(n, args.pods) for n in names])
    templates = [t for t, _ in generated]
    batch_dicts = {n: b for n, (_, b) in zip(names, generated)}
    containers_per_batch = statistics.fmean(sum(len(p["containers"]) for p in b["pods"]) for b in batch_dicts.values())
    raw_size = statistics.fmean(len(t) for t in templates)

    # Intervals end on aligned ticks in the recent past (inside the raw retention, none in the future).
    intervals = 1 + 2 * args.workers + -(-args.max_batches // args.nodes)
    step = timedelta(seconds=args.interval)
    now = datetime.now(timezone.utc)
    first_end = datetime.fromtimestamp(now.timestamp() // args.interval * args.interval, tz=timezone.utc) - step * (intervals + 10)
    ends = [first_end + step * k for k in range(intervals)]
    t0 = time.perf_counter()
    bodies = make_bodies(templates, ends, args.gzip_level)
    gz_size = statistics.fmean(len(b) for b in bodies[0])
    print(
        f"{args.nodes} nodes x {args.pods} pods ({containers_per_batch:.1f} containers per batch); "
        f"{len(ends)} intervals prepared in {time.perf_counter() - t0:.1f} s; body {raw_size / 1024:.0f} KiB, "
        f"gzip -{args.gzip_level} {gz_size / 1024:.1f} KiB"
    )

    if not args.port:
        with socket.socket() as probe:  # other engineers run servers on the usual ports
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
    profile_dir = tempfile.mkdtemp(prefix="km-ingest-profile-") if args.profile_server else None
    server = start_gunicorn(env, args.port, args.workers, args.worker_class, args.threads, profile_dir, args.gc_tuned)
    try:
        gunicorn_pids = children_of(server.pid)
        # Each worker process keeps its own inventory cache, and requests land on workers at
        # random: warm up for enough intervals that every worker has seen nearly every node
        # (a running cluster's steady state), then time the rest.
        warm_intervals = min(len(bodies) - 1, 1 + 2 * args.workers)
        warm_bodies = [body for interval_bodies in bodies[:warm_intervals] for body in interval_bodies]
        warm, warm_seconds = post_all(args.port, token, warm_bodies, args.concurrency, None)
        bad = [r for r in warm if r[0] != 201]
        if bad:
            raise SystemExit(f"warm-up failed: {bad[0][0]} {bad[0][3][:500]!r}\n{Path(server.log_path).read_text()[-3000:]}")
        print(f"warm-up: {warm_intervals} intervals of {args.nodes} nodes (first contact writes the whole inventory) in {warm_seconds:.1f} s")

        flat = [body for interval_bodies in bodies[warm_intervals:] for body in interval_bodies]
        cpu0, (all0, idle0) = cpu_by_kind(gunicorn_pids, args.database), machine_cpu()
        results, elapsed = post_all(args.port, token, flat, args.concurrency, args.duration)
        cpu1, (all1, idle1) = cpu_by_kind(gunicorn_pids, args.database), machine_cpu()
        overhead = fixed_overhead(args.port, token, bodies[0][0], gunicorn_pids, args.database)
    finally:
        server.terminate()
        server.wait(timeout=30)

    if profile_dir:
        import pstats

        files = sorted(glob.glob(os.path.join(profile_dir, "*.prof")))
        if files:
            stats = pstats.Stats(*files)
            print(f"\n== gunicorn workers under cProfile (CPU time; figures above are slowed by the profiler): {len(files)} workers, {len(results)} timed + {len(warm)} warm-up requests")
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
        shutil.rmtree(profile_dir, ignore_errors=True)

    statuses = defaultdict(int)
    for r in results:
        statuses[r[0]] += 1
    ok = [r for r in results if r[0] == 201]
    if len(ok) != len(results):
        sample = next(r for r in results if r[0] != 201)
        print(f"!! non-201 answers: {dict(statuses)}; e.g. {sample[3][:300]!r}")
        print("!! gunicorn's log ends with:\n" + Path(server.log_path).read_text()[-3000:])
    if len(results) >= len(flat):
        print("!! ran out of prepared batches before the deadline: raise --max-batches")
    latencies = sorted(r[1] for r in ok)
    e2e_batches = len(ok) / elapsed
    e2e_pods = e2e_batches * args.pods
    e2e_rows = e2e_batches * (args.pods + containers_per_batch + 1)
    print()
    print(f"== end to end: gunicorn {args.worker_class} x{args.workers}" + (f" ({args.threads} threads)" if args.worker_class == "gthread" else "") + (", GC tuned" if args.gc_tuned else "") + f", {args.concurrency} client connections, {elapsed:.1f} s")
    print(f"   {len(ok)} batches stored, {e2e_batches:.1f} batches/s")
    print(f"   {e2e_pods:,.0f} pod samples/s (with their containers: {e2e_rows:,.0f} sample rows/s)")
    print(f"   latency p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms")
    busy = (all1 - all0) - (idle1 - idle0)
    print(f"   machine CPU busy {busy / elapsed:.2f} of {os.cpu_count()} cores; CPU seconds per batch by process:")
    for kind in ("gunicorn", "postgres (bench backends)", "postgres (shared: wal, checkpoints)", "bench (this script)"):  # noqa: E501
        print(f"     {kind:38s} {(cpu1[kind] - cpu0[kind]) / len(ok) * 1000:6.2f} ms")
        if kind == "gunicorn":
            print(f"       of which fixed per request (HTTP, middleware, DRF, token auth; on the 415 path): {overhead * 1000:.2f} ms")
    e2e_cpu = sum(cpu1[k] - cpu0[k] for k in ("gunicorn", "postgres (bench backends)", "postgres (shared: wal, checkpoints)", "bench (this script)")) / len(ok)
    print("   server-side time per request (Server-Timing means, wall ms, in a worker thread):")
    for name, ms in breakdown(results):
        print(f"     {name:16s} {ms:6.2f}")

    per_sample, compressed = bytes_per_pod_sample(url)
    print(f"   on disk per pod sample (its row, its containers' rows, indexes): raw {per_sample:,.0f} bytes; compressed {compressed}")

    if args.skip_raw:
        return
    setup_django(env)
    rows = raw_rows(url, batch_dicts)
    later = ends[-1] + step * 20
    print()
    print(f"== raw binary COPY of the same rows into the same tables, {args.workers} processes, {args.duration:.0f} s each")
    b1, p1, r1, c1 = raw_copy(url, rows, later, args.interval, args.workers, 1, args.duration, args.database)
    print(f"   one transaction per batch:     {b1:7.1f} batches/s, {p1:9,.0f} pod samples/s, {r1:9,.0f} rows/s; {c1 * 1000:5.2f} ms CPU per batch (client + postgres)")
    later += step * 4000
    b2, p2, r2, c2 = raw_copy(url, rows, later, args.interval, args.workers, 50, args.duration, args.database)
    print(f"   50 batches per COPY:           {b2:7.1f} batches/s, {p2:9,.0f} pod samples/s, {r2:9,.0f} rows/s; {c2 * 1000:5.2f} ms CPU per batch (client + postgres)")
    print()
    print(f"== ratio end to end / raw COPY: {e2e_pods / p1 * 100:.0f} % of per-batch COPY, {e2e_pods / p2 * 100:.0f} % of bulk COPY")
    # Throughput on a shared machine depends on what else runs; CPU per batch much less so.
    print(
        f"   by CPU per batch (independent of other load): end to end {e2e_cpu * 1000:.2f} ms, raw COPY {c1 * 1000:.2f} ms "
        f"per batch / {c2 * 1000:.2f} ms bulk -> {c1 / e2e_cpu * 100:.0f} % / {c2 / e2e_cpu * 100:.0f} %; "
        f"on {os.cpu_count()} otherwise idle cores that is about {os.cpu_count() / e2e_cpu * args.pods:,.0f} pod samples/s end to end "
        f"and {os.cpu_count() / c1 * args.pods:,.0f} / {os.cpu_count() / c2 * args.pods:,.0f} for raw COPY"
    )
    formats = compare_copy_formats(url, next(iter(rows.values())), args.copy_format_repeat)
    print(
        "   COPY format, one batch into index-less copies of the tables: "
        + ", ".join(f"{fmt.lower()} {cpu:.2f} ms client CPU / {wall:.2f} ms wall" for fmt, (cpu, wall) in formats.items())
    )
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
