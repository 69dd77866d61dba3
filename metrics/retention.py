"""Retention per tier: raw samples RETENTION_RAW_DAYS, 1m rollups RETENTION_1M_DAYS, 1h RETENTION_1H_DAYS.

* tsl: TimescaleDB's retention policies (created by migration 0003) do the work; apply() only
  brings their drop_after (and the refresh policies' reach) in line with the settings when those
  changed since migrate.
* apache: drop_chunks() on the sample hypertables and the materialized rollup hypertables.
* plain: DELETE in time slices, one short transaction each, oldest first, so no statement holds
  locks or bloats WAL for long.

Raw samples are never removed before the rollups have materialized them, whatever the setting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from metrics import backend
from metrics.rollup_schema import ENTITY, REFRESH_POLICIES, STATE_TABLE, retention_days
from metrics.storage_schema import SAMPLE_TABLES

GPU_SAMPLE_TABLE = "metrics_gpusample"

# Width of one DELETE in tier plain.
DELETE_SLICE = {"raw": timedelta(hours=1), "1m": timedelta(hours=6), "1h": timedelta(days=7)}


@dataclass
class RetentionResult:
    tier: str
    # relation -> chunks dropped (apache), rows deleted (plain) or new drop_after (tsl)
    removed: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        done = {k: v for k, v in self.removed.items() if v}
        unit = {"apache": "chunks", "plain": "rows", "tsl": "policy updated"}[self.tier]
        what = ", ".join(f"{k}={v}" for k, v in done.items()) if done else "nothing to remove"
        return f"retention ({unit}): {what}"


def relations() -> dict[str, list[str]]:
    """Relation kind ('raw', '1m', '1h') -> the relations retention applies to."""
    return {
        # GPU samples (rolled up per device, the catalogue's `gpu` entity) age like the rest.
        "raw": [*SAMPLE_TABLES, GPU_SAMPLE_TABLE],
        "1m": [e.relation("1m") for e in ENTITY.values()],
        "1h": [e.relation("1h") for e in ENTITY.values()],
    }


def cutoffs(now: datetime) -> dict[str, datetime]:
    return {kind: now - timedelta(days=days) for kind, days in retention_days().items()}


def apply(*, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> RetentionResult:
    started = time.monotonic()
    tier = backend.storage_tier(using)
    if tier is None:
        raise RuntimeError("The metrics migrations have not run; run `manage.py migrate` first.")
    now = now or timezone.now()
    result = RetentionResult(tier=tier)
    with connections[using].cursor() as cursor:
        if tier == "tsl":
            _sync_policies(cursor, result)
        else:
            limits: dict[str, datetime | None] = dict(cutoffs(now))
            cursor.execute(f"SELECT materialized_1m FROM {STATE_TABLE} WHERE id = 1")
            materialized = cursor.fetchone()[0]
            # Unmaterialized raw samples are the only copy of their minutes: keep them.
            raw = cutoffs(now)["raw"]
            limits["raw"] = min(raw, materialized) if materialized else None
            for kind, names in relations().items():
                if limits[kind] is None:
                    continue
                for name in names:
                    table = name if kind == "raw" else f"{name}_mat"
                    if tier == "apache":
                        cursor.execute(
                            "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                            [table, limits[kind]],
                        )
                        result.removed[table] = cursor.fetchone()[0]
                    else:
                        column = '"time"' if kind == "raw" else "bucket"
                        cutoff = limits[kind]
                        assert cutoff is not None  # skipped above when None
                        result.removed[table] = _delete_before(
                            cursor, table, column, cutoff, DELETE_SLICE[kind]
                        )
    result.seconds = time.monotonic() - started
    return result


def _delete_before(cursor: Any, table: str, column: str, cutoff: datetime, width: timedelta) -> int:
    cursor.execute(f"SELECT min({column}) FROM {table}")
    oldest = cursor.fetchone()[0]
    deleted = 0
    while oldest is not None and oldest < cutoff:
        upto = min(oldest + width, cutoff)
        # Outside any transaction block each DELETE commits on its own.
        cursor.execute(f"DELETE FROM {table} WHERE {column} < %s", [upto])
        deleted += cursor.rowcount
        oldest = upto
    return deleted


_JOB_SQL = """
    SELECT j.job_id, (j.config ->> %s)::interval
    FROM timescaledb_information.jobs j
    WHERE j.proc_name = %s
      -- Versions differ in naming a continuous aggregate's job by its view or by its
      -- materialization hypertable.
      AND j.hypertable_name IN (
          %s,
          coalesce((SELECT materialization_hypertable_name
                    FROM timescaledb_information.continuous_aggregates
                    WHERE view_name = %s), %s))
"""


def _job_setting(cursor: Any, proc: str, key: str, name: str) -> timedelta | None:
    cursor.execute(_JOB_SQL, [key, proc, name, name, name])
    row = cursor.fetchone()
    return row[1] if row else None


def _sync_policies(cursor: Any, result: RetentionResult) -> None:
    days = retention_days()
    for kind, names in relations().items():
        wanted = timedelta(days=days[kind])
        for name in names:
            if _job_setting(cursor, "policy_retention", "drop_after", name) == wanted:
                continue
            cursor.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", [name])
            cursor.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)",
                [name, wanted],
            )
            result.removed[name] = f"drop_after {days[kind]} days"
    # The refresh policies reach back exactly over the raw retention (see rollup_schema).
    reach = timedelta(days=days["raw"])
    for resolution, policy in REFRESH_POLICIES.items():
        for entity in ENTITY.values():
            name = entity.relation(resolution)
            current = _job_setting(cursor, "policy_refresh_continuous_aggregate", "start_offset", name)
            if current == reach:
                continue
            cursor.execute(
                "SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)", [name]
            )
            cursor.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval, "
                "end_offset => %s::interval, schedule_interval => %s::interval)",
                [name, reach, policy["end_offset"], policy["schedule_interval"]],
            )
            result.removed[f"{name} refresh"] = f"start_offset {days['raw']} days"
