"""FROZEN SNAPSHOT for migration 0006: the GPU sample table's key and hypertable. Never edit it;
a change is a new snapshot and a new migration.

Like the other sample tables (storage_0002): primary key (id, time), because every unique index
of a hypertable must hold its time column, and a hypertable with one-day chunks in the TimescaleDB
tiers. In tier tsl a retention policy drops raw GPU samples after RETENTION_RAW_DAYS, as for the
other raw samples (metrics/retention.py keeps it in line with the setting and drops chunks or
deletes rows in the other tiers).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

TABLE = "metrics_gpusample"
RAW_CHUNK_INTERVAL = "1 day"


def _tier(cursor: Any) -> str | None:
    cursor.execute("SELECT to_regclass('metrics_storage') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute("SELECT tier FROM metrics_storage WHERE id = 1")
    row = cursor.fetchone()
    return row[0] if row else None


def create(cursor: Any) -> None:
    cursor.execute(
        f'ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_pkey, '
        f'ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, "time")'
    )
    tier = _tier(cursor)
    if tier in ("tsl", "apache"):
        # Django already made a (-time) index; TimescaleDB's default one would duplicate it.
        cursor.execute(
            "SELECT create_hypertable(%s::regclass, 'time', "
            "chunk_time_interval => %s::interval, create_default_indexes => false, "
            "migrate_data => true)",
            [TABLE, RAW_CHUNK_INTERVAL],
        )
    if tier == "tsl":
        cursor.execute(
            "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s))",
            [TABLE, int(settings.RETENTION_RAW_DAYS)],
        )


def drop(cursor: Any) -> None:
    """Undo what create() added that DROP TABLE would not: the tsl retention job goes with the
    hypertable, but say so explicitly so a partial reverse never leaves a job behind."""
    if _tier(cursor) == "tsl":
        cursor.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", [TABLE])
