"""FROZEN SNAPSHOT for migration 0008: the serving sample table as a sample table like the others.

Keyed on (id, time); a hypertable in the TimescaleDB tiers (1-day chunks, no duplicate time
index); in the tsl tier compressed after 2 days (segmented by pod) and dropped after the raw
retention, as 0002 and 0003 do for the other sample tables. Never edit it; a change is a new
snapshot and a new migration. It reads the tier through metrics.backend, which describes the
database rather than defining it.
"""

from __future__ import annotations

from typing import Any

from metrics import backend

TABLE = "metrics_servingsample"
SEGMENT_BY = "pod_id"
RAW_CHUNK_INTERVAL = "1 day"
COMPRESS_AFTER = "2 days"


def _raw_days() -> int:
    from django.conf import settings

    return int(settings.RETENTION_RAW_DAYS)


def forward(cursor: Any) -> None:
    cursor.execute(
        f'ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_pkey, ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, "time")'
    )
    tier = backend.read_recorded(cursor).tier
    if tier in (None, "plain"):
        return
    cursor.execute(
        "SELECT create_hypertable(%s::regclass, 'time', chunk_time_interval => %s::interval, "
        "create_default_indexes => false, migrate_data => true)",
        [TABLE, RAW_CHUNK_INTERVAL],
    )
    if tier != "tsl":
        return
    cursor.execute(
        f"ALTER TABLE {TABLE} SET (timescaledb.compress, timescaledb.compress_segmentby = "
        f"'{SEGMENT_BY}', timescaledb.compress_orderby = 'time DESC')"
    )
    cursor.execute(
        "SELECT add_compression_policy(%s::regclass, compress_after => %s::interval)",
        [TABLE, COMPRESS_AFTER],
    )
    cursor.execute(
        "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s))",
        [TABLE, _raw_days()],
    )


def backward(cursor: Any) -> None:
    """Reversing 0009 drops the table, hypertable, policies and all; but it first removes the
    fields added after CreateModel (pod), and TimescaleDB refuses to drop a compression segmentby
    column: in tier tsl compression is turned off first (the only change since the snapshot was
    frozen; forward is unchanged)."""
    if backend.read_recorded(cursor).tier != "tsl":
        return
    cursor.execute("SELECT remove_compression_policy(%s::regclass, if_exists => true)", [TABLE])
    cursor.execute("SELECT decompress_chunk(c, true) FROM show_chunks(%s::regclass) c", [TABLE])
    cursor.execute(f"ALTER TABLE {TABLE} SET (timescaledb.compress = false)")
