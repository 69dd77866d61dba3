"""How long a rollup refresh takes: N pods sampled every 10 s for H hours, then steady state.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/km_bench_rollups python bench/rollups.py
    DATABASE_URL=... TIMESCALEDB=off python bench/rollups.py --pods 500 --hours 1

The database named in DATABASE_URL is created if missing, migrated, and its samples and rollups
are REPLACED: point it at a scratch database. Prints, for the tier the database offers:
  * the first refresh materializing the whole loaded range (what `refreshrollups` does after an
    outage or on first start),
  * a steady-state refresh after one more minute of samples (what `refreshrollups --loop` does
    every ROLLUP_REFRESH_SECONDS),
  * a refresh that recomputes a 10-minute range invalidated by late samples of every pod.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402
import psycopg  # noqa: E402

MINUTE = timedelta(minutes=1)


def ensure_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def insert_samples(cursor, pods: int, nodes: int, start, end, interval: int) -> None:
    """One pod and node sample per interval in [start, end), written in one INSERT ... SELECT each."""
    cursor.execute(
        """
        INSERT INTO metrics_podsample (time, interval_seconds, cpu_seconds, memory_working_set_bytes,
            memory_rss_bytes, disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes,
            cpu_limit_cores, memory_limit_bytes, namespace, deployment, node_id, pod_id)
        SELECT t, %(i)s, %(i)s * (0.05 + (p.id %% 17) / 20.0), 50000000 + p.id * 100000,
            40000000, 1000 * %(i)s, 2000 * %(i)s, 5000 * %(i)s, 3000 * %(i)s,
            p.cpu_limit_cores, p.memory_limit_bytes, p.namespace, p.deployment, p.node_id, p.id
        FROM metrics_pod p,
             generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 microsecond',
                             make_interval(secs => %(i)s)) t
        """,
        {"i": interval, "start": start, "end": end},
    )
    cursor.execute(
        """
        INSERT INTO metrics_nodesample (time, interval_seconds, cpu_seconds, memory_working_set_bytes,
            cpu_capacity_cores, memory_total_bytes, memory_available_bytes, node_id)
        SELECT t, %(i)s, %(i)s * 6.0, 40000000000, 16, 68719476736, 20000000000, n.id
        FROM metrics_node n,
             generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 microsecond',
                             make_interval(secs => %(i)s)) t
        """,
        {"i": interval, "start": start, "end": end},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="Load the samples and stop, to time `manage.py refreshrollups` by hand.",
    )
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/km_bench_rollups")
    os.environ["DATABASE_URL"] = url
    ensure_database(url)
    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from metrics import backend, rollups
    from metrics.models import default_cluster_id
    from metrics.tests.factories import reset_rollups

    call_command("migrate", verbosity=0)
    tier = backend.storage_tier()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE metrics_podsample, metrics_nodesample, metrics_containersample, "
            "metrics_container, metrics_pod, metrics_node CASCADE"
        )
        cursor.execute(
            "INSERT INTO metrics_node (name, first_seen, last_seen, collector_info, cluster_id) "
            "SELECT 'node-' || n, now(), now(), '{}', %s FROM generate_series(1, %s) n",
            [default_cluster_id(), args.nodes],
        )
        cursor.execute(
            """
            INSERT INTO metrics_pod (uid, name, namespace, node_id, owner_kind, owner_name, deployment,
                qos, labels, cpu_limit_cores, memory_limit_bytes, first_seen, last_seen)
            SELECT 'uid-' || p, 'pod-' || p, 'ns-' || (p %% 10), n.id, 'ReplicaSet', 'rs-' || (p %% 50),
                CASE WHEN p %% 5 = 0 THEN NULL ELSE 'dep-' || (p %% 50) END, 'Burstable', '{}',
                CASE WHEN p %% 2 = 0 THEN 1.0 END, CASE WHEN p %% 3 = 0 THEN 536870912 END, now(), now()
            FROM generate_series(1, %s) p
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM metrics_node) n
              ON n.k = p %% %s
            """,
            [args.pods, args.nodes],
        )
    reset_rollups()

    end = rollups.floor_to(timezone.now(), MINUTE) - MINUTE
    start = end - timedelta(hours=args.hours)
    loaded = time.monotonic()
    with connection.cursor() as cursor:
        insert_samples(cursor, args.pods, args.nodes, start, end, args.interval)
        cursor.execute("ANALYZE metrics_podsample")
        cursor.execute("ANALYZE metrics_nodesample")
        cursor.execute("SELECT count(*) FROM metrics_podsample")
        rows = cursor.fetchone()[0]
    print(f"tier {tier}: {rows} pod samples ({args.pods} pods x {args.hours:g} h at {args.interval} s) "
          f"loaded in {time.monotonic() - loaded:.1f} s")

    if args.load_only:
        return
    # now = end + 1 min: the refresh materializes up to `end`, where the loaded data stops.
    first = rollups.refresh(now=end + MINUTE)
    print(f"first refresh (whole range):     {first.seconds:7.3f} s   {first.summary()}")

    with connection.cursor() as cursor:
        insert_samples(cursor, args.pods, args.nodes, end, end + MINUTE, args.interval)
    steady = rollups.refresh(now=end + 2 * MINUTE)
    print(f"steady refresh (one new minute): {steady.seconds:7.3f} s   {steady.summary()}")

    # Every pod's samples for 10 minutes arrive late (deleted, then written again and recorded).
    late_start = start + timedelta(minutes=20)
    late_end = late_start + timedelta(minutes=10)
    with connection.cursor() as cursor:
        cursor.execute('DELETE FROM metrics_podsample WHERE "time" >= %s AND "time" < %s', [late_start, late_end])
    rollups.refresh(since=late_start - MINUTE, now=end + 2 * MINUTE)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO metrics_podsample (time, interval_seconds, cpu_seconds, namespace, deployment, node_id, pod_id)
            SELECT t, %(i)s, %(i)s * 0.5, p.namespace, p.deployment, p.node_id, p.id
            FROM metrics_pod p, generate_series(%(s)s::timestamptz, %(e)s::timestamptz - interval '1 microsecond',
                                                make_interval(secs => %(i)s)) t
            """,
            {"i": args.interval, "s": late_start, "e": late_end},
        )
        rollups.record_ingested_range(connection, late_start, late_end)
    late = rollups.refresh(now=end + 2 * MINUTE)
    print(f"late-data refresh (10 min, all pods): {late.seconds:7.3f} s   {late.summary()}")
    print_rollup_bytes(tier)


def print_rollup_bytes(tier: str) -> None:
    """On-disk bytes per materialized rollup row (table or aggregate, its indexes), for docs/scaling.md."""
    from django.db import connection

    from metrics.rollup_schema import ENTITY

    parts = []
    with connection.cursor() as cursor:
        for name, entity in ENTITY.items():
            for resolution in ("1m", "1h"):
                relation = entity.relation(resolution)
                if tier == "tsl":
                    cursor.execute(
                        "SELECT format('%%I.%%I', h.schema_name, h.table_name) FROM _timescaledb_catalog.continuous_agg ca "
                        "JOIN _timescaledb_catalog.hypertable h ON h.id = ca.mat_hypertable_id WHERE ca.user_view_name = %s",
                        [relation],
                    )
                    stored = cursor.fetchone()[0]
                    size = f"hypertable_size('{stored}')"
                else:
                    stored = f"{relation}_mat"
                    # A hypertable's parent holds nothing; its chunks hold the rows (tier apache).
                    cursor.execute("SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL")
                    hyper = cursor.fetchone()[0]
                    if hyper:
                        cursor.execute(
                            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
                            [stored],
                        )
                        hyper = cursor.fetchone()[0]
                    size = f"hypertable_size('{stored}')" if hyper else f"pg_total_relation_size('{stored}')"
                cursor.execute(f"SELECT {size}, (SELECT count(*) FROM {stored})")
                total, rows = cursor.fetchone()
                parts.append(f"{name} {resolution} {total / max(rows, 1):,.0f} ({rows} rows)")
    print("on disk per rollup row, bytes: " + "; ".join(parts))


if __name__ == "__main__":
    main()
