"""What running code needs to know of the sample tables.

The DDL that keys them on (id, time), makes them hypertables and records the tier lives in the
frozen snapshot metrics/migrations/snapshots/storage_0002.py, which migrations 0002 and 0003 run.
"""

from __future__ import annotations

from typing import Any

# Sample tables and the column their compressed chunks are segmented by (tier tsl).
SAMPLE_TABLES: dict[str, str] = {
    "metrics_nodesample": "node_id",
    "metrics_podsample": "pod_id",
    "metrics_containersample": "container_id",
    "metrics_servingsample": "pod_id",  # migration 0008 (snapshots/serving_0008.py)
}


def is_hypertable(cursor: Any, table: str) -> bool:
    cursor.execute("SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = %s)",
        [table],
    )
    return bool(cursor.fetchone()[0])
