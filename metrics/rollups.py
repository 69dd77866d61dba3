"""Keeping the rollups fresh: watermark, late-data invalidations, refresh.

Tiers `apache` and `plain` keep the rollups in tables (`metrics_rollup_*_mat`, see
metrics/rollup_schema.py) read through views that add the newest raw data on the fly. State lives
in the one-row table metrics_rollup_state:

* `materialized_1m` / `materialized_1h`: every bucket before it is in the *_mat table; the views
  aggregate raw samples (1m) or 1m rows (1h) from there on, so reads always include the newest data.
* `invalidation_threshold`: ingest logs a late range (samples starting before it) in
  metrics_rollup_invalidation; the next refresh recomputes exactly the 1m buckets of those ranges,
  then the 1h buckets containing them. A recompute deletes and re-inserts whole buckets from raw,
  so nothing is ever counted twice.

The race between an ingest transaction and a refresh is closed with an advisory lock: ingest
holds it shared (record_ingested_range) until it commits; the refresh takes it exclusively only to
move the threshold, in a transaction of its own, and then reads raw data. So every ingest either
committed before the refresh read the raw rows, or saw the new threshold and logged its range.

Tier `tsl` uses continuous aggregates: TimescaleDB tracks invalidations and its policies refresh;
refresh() there calls refresh_continuous_aggregate for the recent window (or --since) so tests and
operators can force freshness.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DataError, OperationalError, connections, transaction
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from metrics import backend
from metrics.catalogue import SUM_OF
from metrics.rollup_schema import (
    ENTITY,
    FROM_RAW,
    INVALIDATION_TABLE,
    RESOLUTIONS,
    STATE_TABLE,
    column_list,
    select_from_finer,
    select_from_raw,
)

logger = logging.getLogger(__name__)

# The newest minute is left to the views' live part: samples for it are still arriving.
END_OFFSET = timedelta(minutes=1)
# The materialized range advances in slices, one transaction each, so a first refresh of a week
# of data neither holds one huge transaction nor loses all its work if interrupted.
SLICE = timedelta(hours=6)
# Advisory lock keys (arbitrary, fixed): one refresher at a time; ingest vs threshold move.
REFRESH_LOCK = 0x6B6D_0001
INGEST_LOCK = 0x6B6D_0002

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def floor_to(moment: datetime, width: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=moment.tzinfo or dt_timezone.utc)
    return moment - (moment - epoch) % width


def ceil_to(moment: datetime, width: timedelta) -> datetime:
    floored = floor_to(moment, width)
    return floored if floored == moment else floored + width


def _cursor_of(cursor_or_connection: Any) -> tuple[Any, str]:
    if cursor_or_connection is None:
        return connections[DEFAULT_DB_ALIAS].cursor(), DEFAULT_DB_ALIAS
    if hasattr(cursor_or_connection, "execute"):
        db = getattr(cursor_or_connection, "db", None)
        return cursor_or_connection, getattr(db, "alias", DEFAULT_DB_ALIAS)
    return cursor_or_connection.cursor(), getattr(cursor_or_connection, "alias", DEFAULT_DB_ALIAS)


def record_ingested_range(cursor_or_connection: Any, start: datetime, end: datetime) -> None:
    """Tell the rollups that samples whose interval starts lie in [start, end) were written.

    Call it inside the ingest transaction (before or after writing the samples). When the range
    starts before the invalidation threshold it is logged so the next refresh recomputes those
    buckets; otherwise it costs one lock and one indexed read. No-op in tier tsl, where
    TimescaleDB tracks invalidations itself.
    """
    cursor, alias = _cursor_of(cursor_or_connection)
    tier = backend.storage_tier(alias)
    if tier in (None, "tsl"):
        return
    # Two statements on purpose: the threshold must be read with a snapshot taken after the lock
    # is granted, or a refresh that moved it while we waited would go unseen.
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [INGEST_LOCK])
    cursor.execute(
        f"INSERT INTO {INVALIDATION_TABLE} (start_time, end_time) "
        f"SELECT %s, %s FROM {STATE_TABLE} WHERE id = 1 AND invalidation_threshold > %s",
        [start, max(start, end), start],
    )


@dataclass
class RefreshResult:
    tier: str
    seconds: float = 0.0
    materialized_1m: tuple[datetime | None, datetime | None] = (None, None)
    materialized_1h: tuple[datetime | None, datetime | None] = (None, None)
    recomputed: list[tuple[datetime, datetime]] = field(default_factory=list)
    rows_1m: int = 0
    rows_1h: int = 0
    skipped: str | None = None
    # tier tsl: aggregates left to a concurrently running policy
    busy: list[str] = field(default_factory=list)
    # (resolution, entity, bucket) left empty because their sums overflow (see POISONED_TABLE)
    poisoned: list[tuple[str, str, datetime]] = field(default_factory=list)

    def summary(self) -> str:
        if self.skipped:
            return f"tier={self.tier} skipped: {self.skipped}"
        parts = [f"tier={self.tier}"]
        a, b = self.materialized_1m
        parts.append(f"1m {_fmt(a)} -> {_fmt(b)}")
        a, b = self.materialized_1h
        parts.append(f"1h {_fmt(a)} -> {_fmt(b)}")
        if self.recomputed:
            spans = ", ".join(f"{_fmt(s)}..{_fmt(e)}" for s, e in self.recomputed[:5])
            more = f" (+{len(self.recomputed) - 5} more)" if len(self.recomputed) > 5 else ""
            parts.append(f"recomputed {len(self.recomputed)} range(s) {spans}{more}")
        if self.tier != "tsl":
            parts.append(f"rows 1m={self.rows_1m} 1h={self.rows_1h}")
        if self.busy:
            parts.append(f"left to running policies: {', '.join(self.busy)}")
        if self.poisoned:
            listed = ", ".join(f"{r} {e} {_fmt(b)}" for r, e, b in self.poisoned[:5])
            more = f" (+{len(self.poisoned) - 5} more)" if len(self.poisoned) > 5 else ""
            parts.append(f"POISONED buckets left empty (sums overflow): {listed}{more}")
        parts.append(f"in {self.seconds:.3f} s")
        return " ".join(parts)


def _fmt(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def refresh(
    *, now: datetime | None = None, since: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> RefreshResult:
    """Bring the rollups up to `now - END_OFFSET`, recomputing invalidated (and `since`) ranges."""
    started = time.monotonic()
    tier = backend.storage_tier(using)
    if tier is None:
        raise RuntimeError("The metrics migrations have not run; run `manage.py migrate` first.")
    now = now or timezone.now()
    connection = connections[using]
    if connection.in_atomic_block:
        raise RuntimeError("refresh() commits as it goes; call it outside a transaction.")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [REFRESH_LOCK])
        if not cursor.fetchone()[0]:
            return RefreshResult(tier=tier, skipped="another refresh is running")
        try:
            if tier == "tsl":
                result = _refresh_tsl(cursor, now, since)
            else:
                result = _refresh_tables(connection, tier, now, since)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK])
    result.seconds = time.monotonic() - started
    if tier != "tsl" and not result.skipped:
        # For /metrics (kubemonitor_rollup_refresh_duration_seconds); tsl has its job stats.
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {STATE_TABLE} SET refresh_seconds = %s WHERE id = 1", [result.seconds])
    return result


# --- tier tsl ----------------------------------------------------------------------------------

def _refresh_tsl(cursor: Any, now: datetime, since: datetime | None) -> RefreshResult:
    end = floor_to(now - END_OFFSET, MINUTE)
    # Stay inside raw retention: refreshing a range whose raw chunks were dropped empties it.
    oldest = floor_to(now - timedelta(days=settings.RETENTION_RAW_DAYS) + HOUR, HOUR)
    # The whole raw range by default: TimescaleDB only recomputes where it logged invalidations,
    # and a never-materialized range below the watermark would otherwise stay invisible.
    start = max(since, oldest) if since else oldest
    start = floor_to(start, MINUTE)
    result = RefreshResult(tier="tsl", materialized_1m=(start, end))
    windows = {"1m": (start, end), "1h": (floor_to(start, HOUR), floor_to(end, HOUR))}
    result.materialized_1h = windows["1h"]
    for resolution in ("1m", "1h"):  # 1h is built on 1m: refresh the finer level first
        lo, hi = windows[resolution]
        if hi <= lo:
            continue
        for entity in ENTITY.values():
            if not call_refresh(cursor, entity.relation(resolution), lo, hi):
                result.busy.append(entity.relation(resolution))
    if since:
        result.recomputed.append((start, end))
    return result


# A refresh policy working on the same aggregate makes refresh_continuous_aggregate fail at once
# with LockNotAvailable; it is doing our work, so wait for it and then refresh what it left.
BUSY_RETRIES = 40
BUSY_WAIT_SECONDS = 0.25


def call_refresh(cursor: Any, relation: str, lo: datetime, hi: datetime, *, force: bool = False) -> bool:
    """CALL refresh_continuous_aggregate, waiting out a concurrent policy; False if it never got in."""
    for _ in range(BUSY_RETRIES):
        try:
            cursor.execute(
                "CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz"
                + (", force => true)" if force else ")"),
                [relation, lo, hi],
            )
            return True
        except OperationalError as exc:
            if not isinstance(exc.__cause__, LockNotAvailable):
                raise
            time.sleep(BUSY_WAIT_SECONDS)
    logger.warning("%s: a concurrent refresh kept it busy; its policy will catch up", relation)
    return False


# --- tiers apache / plain ----------------------------------------------------------------------

def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _rebuild_1m(cursor: Any, tier: str, lo: datetime, hi: datetime, only: str | None = None) -> int:
    """Replace the 1m buckets in [lo, hi) of every entity (or `only` that one), from raw samples."""
    rows = 0
    for name in FROM_RAW:
        if only not in (None, name):
            continue
        entity = ENTITY[name]
        mat = f"{entity.relation('1m')}_mat"
        cursor.execute(f"DELETE FROM {mat} WHERE bucket >= %s AND bucket < %s", [lo, hi])
        cursor.execute(
            f"INSERT INTO {mat} ({column_list(entity)}) "
            + select_from_raw(tier, entity, "1m", where='"time" >= %s AND "time" < %s'),
            [lo, hi],
        )
        rows += cursor.rowcount
    # Namespaces and Deployments are sums of their pods: cheaper from the fresh pod rows.
    for name, of in SUM_OF.items():
        if only not in (None, name):
            continue
        entity = ENTITY[name]
        pod_mat = f"{ENTITY[of].relation('1m')}_mat"
        mat = f"{entity.relation('1m')}_mat"
        where = "bucket >= %s AND bucket < %s" + (f" AND {entity.where}" if entity.where else "")
        cursor.execute(f"DELETE FROM {mat} WHERE bucket >= %s AND bucket < %s", [lo, hi])
        cursor.execute(
            f"INSERT INTO {mat} ({column_list(entity)}) "
            + select_from_finer(tier, entity, "1m", pod_mat, where=where),
            [lo, hi],
        )
        rows += cursor.rowcount
    return rows


def _rebuild_1h(cursor: Any, tier: str, lo: datetime, hi: datetime, only: str | None = None) -> int:
    """Replace the 1h buckets in [lo, hi) of every entity (or `only` that one), from the 1m rows."""
    rows = 0
    for entity in ENTITY.values():
        if only not in (None, entity.name):
            continue
        mat = f"{entity.relation('1h')}_mat"
        source = f"{entity.relation('1m')}_mat"
        cursor.execute(f"DELETE FROM {mat} WHERE bucket >= %s AND bucket < %s", [lo, hi])
        cursor.execute(
            f"INSERT INTO {mat} ({column_list(entity)}) "
            + select_from_finer(tier, entity, "1h", source, where="bucket >= %s AND bucket < %s"),
            [lo, hi],
        )
        rows += cursor.rowcount
    return rows


# --- poisoned buckets ---------------------------------------------------------------------------
#
# Ingest bounds every number (metrics/ingest/rules.py), but rows written before those bounds or
# around ingest can make a bucket's sums overflow (PostgreSQL raises "value out of range"). One
# such bucket must not stop the refresh for the whole installation: a failing range is rebuilt a
# bucket at a time, a failing bucket an entity at a time, and what still fails is left empty,
# logged and recorded in POISONED_TABLE; the watermark moves on. Rebuilding a recorded bucket
# successfully later (after the bad rows are deleted and the range invalidated or --since)
# forgets it.

POISONED_TABLE = "metrics_rollup_poisoned"
_WIDTH = {"1m": MINUTE, "1h": HOUR}


def _rebuild_guarded(
    cursor: Any, tier: str, resolution: str, lo: datetime, hi: datetime, poisoned: list[tuple[str, str, datetime]]
) -> int:
    """_rebuild_1m / _rebuild_1h of [lo, hi), isolating buckets whose sums overflow."""
    rebuild = _rebuild_1m if resolution == "1m" else _rebuild_1h
    try:
        with transaction.atomic(using=cursor.db.alias):  # a savepoint: undo only this try
            rows = rebuild(cursor, tier, lo, hi)
    except DataError:
        rows = 0
        width = _WIDTH[resolution]
        bucket = lo
        while bucket < hi:
            rows += _rebuild_bucket(cursor, tier, resolution, bucket, min(bucket + width, hi), poisoned)
            bucket += width
        return rows
    cursor.execute(
        f"DELETE FROM {POISONED_TABLE} WHERE resolution = %s AND bucket >= %s AND bucket < %s",
        [resolution, lo, hi],
    )
    return rows


def _rebuild_bucket(
    cursor: Any, tier: str, resolution: str, lo: datetime, hi: datetime, poisoned: list[tuple[str, str, datetime]]
) -> int:
    rebuild = _rebuild_1m if resolution == "1m" else _rebuild_1h
    rows = 0
    for name in (*FROM_RAW, *SUM_OF):  # pods before the sums of pods
        try:
            with transaction.atomic(using=cursor.db.alias):
                rows += rebuild(cursor, tier, lo, hi, only=name)
            cursor.execute(
                f"DELETE FROM {POISONED_TABLE} WHERE resolution = %s AND entity = %s AND bucket = %s",
                [resolution, name, lo],
            )
        except DataError as exc:
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logger.error(
                "rollup %s %s bucket %s left empty: its sums overflow (%s); delete the offending "
                "samples and refresh with --since to rebuild it", resolution, name, _fmt(lo), error,
            )
            # Left empty, so the rollup views read nothing there rather than fail.
            mat = f"{ENTITY[name].relation(resolution)}_mat"
            cursor.execute(f"DELETE FROM {mat} WHERE bucket >= %s AND bucket < %s", [lo, hi])
            cursor.execute(
                f"INSERT INTO {POISONED_TABLE} (resolution, entity, bucket, error, recorded_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (resolution, entity, bucket) "
                "DO UPDATE SET error = EXCLUDED.error, recorded_at = EXCLUDED.recorded_at",
                [resolution, name, lo, error[:1000]],
            )
            poisoned.append((resolution, name, lo))
    return rows


def _read_state(cursor: Any, lock: bool = False) -> tuple[datetime | None, datetime | None, datetime | None]:
    cursor.execute(
        f"SELECT invalidation_threshold, materialized_1m, materialized_1h FROM {STATE_TABLE} "
        "WHERE id = 1" + (" FOR UPDATE" if lock else "")
    )
    return cursor.fetchone()


def _oldest_raw(cursor: Any) -> datetime | None:
    cursor.execute(
        'SELECT least((SELECT min("time") FROM metrics_podsample), '
        '(SELECT min("time") FROM metrics_nodesample), (SELECT min("time") FROM metrics_gpusample), '
        '(SELECT min("time") FROM metrics_servingsample))'
    )
    return cursor.fetchone()[0]


def _refresh_tables(connection: Any, tier: str, now: datetime, since: datetime | None) -> RefreshResult:
    result = RefreshResult(tier=tier)
    target = floor_to(now - END_OFFSET, MINUTE)
    raw_floor = floor_to(now - timedelta(days=settings.RETENTION_RAW_DAYS), MINUTE)

    # 1. Move the invalidation threshold, alone in a short transaction: from its commit on,
    #    every ingest logs samples older than it. Waits only for in-flight ingest transactions.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INGEST_LOCK])
        threshold, m1m, m1h = _read_state(cursor, lock=True)
        if m1m is None:
            oldest = _oldest_raw(cursor)
            m1m = floor_to(oldest, MINUTE) if oldest else target
            m1m = min(m1m, target)
            m1h = floor_to(m1m, HOUR)
        threshold = max(threshold or target, target)
        # Both are set together: materialized_1h follows materialized_1m from the first refresh.
        assert m1h is not None
        cursor.execute(
            f"UPDATE {STATE_TABLE} SET invalidation_threshold = %s, materialized_1m = %s, "
            "materialized_1h = %s WHERE id = 1",
            [threshold, m1m, m1h],
        )
    result.materialized_1m = (m1m, m1m)
    result.materialized_1h = (m1h, m1h)

    # 2. Recompute invalidated ranges (late data) and the forced range, below materialized_1m.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {INVALIDATION_TABLE} RETURNING start_time, end_time")
        wanted = [
            (floor_to(lo, MINUTE), ceil_to(hi if hi > lo else lo + timedelta(microseconds=1), MINUTE))
            for lo, hi in cursor.fetchall()
        ]
        if since is not None:
            wanted.append((floor_to(since, MINUTE), m1m))
        ranges = []
        for lo, hi in _merge(wanted):
            lo, hi = max(lo, raw_floor), min(hi, m1m)
            if lo < hi:
                ranges.append((lo, hi))
        hours = []
        for lo, hi in ranges:
            result.rows_1m += _rebuild_guarded(cursor, tier, "1m", lo, hi, result.poisoned)
            hours.append((floor_to(lo, HOUR), ceil_to(hi, HOUR)))
        for lo, hi in _merge(hours):
            assert m1h is not None  # invalidations exist only below a materialized range
            hi = min(hi, m1h)
            if lo < hi:
                result.rows_1h += _rebuild_guarded(cursor, tier, "1h", lo, hi, result.poisoned)
        result.recomputed = ranges

    # 3. Advance the materialized 1m range to the threshold, a slice per transaction.
    m1m, rows = _advance(connection, tier, "materialized_1m", "1m", m1m, threshold, result.poisoned)
    result.rows_1m += rows
    result.materialized_1m = (result.materialized_1m[0], m1m)

    # 4. Advance the 1h range over the complete hours now in the 1m tables.
    m1h, rows = _advance(connection, tier, "materialized_1h", "1h", m1h, floor_to(m1m, HOUR), result.poisoned)
    result.rows_1h += rows
    result.materialized_1h = (result.materialized_1h[0], m1h)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {STATE_TABLE} SET refreshed_at = %s WHERE id = 1", [now])
    return result


def _advance(
    connection: Any, tier: str, column: str, resolution: str, start: datetime, target: datetime,
    poisoned: list[tuple[str, str, datetime]],
) -> tuple[datetime, int]:
    """Materialize [start, target) a slice per transaction, moving `column` with each slice.

    Each slice commits its rows together with the new edge, so an interrupted refresh resumes
    where it stopped and never leaves rows past the recorded edge.
    """
    rows = 0
    while start < target:
        upto = min(target, start + SLICE)
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            rows += _rebuild_guarded(cursor, tier, resolution, start, upto, poisoned)
            cursor.execute(f"UPDATE {STATE_TABLE} SET {column} = %s WHERE id = 1", [upto])
        start = upto
    return start, rows


def state(using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Where the rollups stand (tiers apache / plain; tsl reports the aggregates' watermarks)."""
    tier = backend.storage_tier(using)
    with connections[using].cursor() as cursor:
        if tier == "tsl":
            marks = {}
            for resolution in RESOLUTIONS:
                relation = ENTITY["pod"].relation(resolution)
                cursor.execute(
                    "SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id)) "
                    "FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s",
                    [relation],
                )
                row = cursor.fetchone()
                marks[f"materialized_{resolution}"] = row[0] if row else None
            return {"tier": tier, **marks}
        cursor.execute(
            f"SELECT invalidation_threshold, materialized_1m, materialized_1h, refreshed_at, "
            f"(SELECT count(*) FROM {INVALIDATION_TABLE}) FROM {STATE_TABLE} WHERE id = 1"
        )
        threshold, m1m, m1h, refreshed_at, pending = cursor.fetchone()
        return {
            "tier": tier,
            "invalidation_threshold": threshold,
            "materialized_1m": m1m,
            "materialized_1h": m1h,
            "refreshed_at": refreshed_at,
            "pending_invalidations": pending,
        }
