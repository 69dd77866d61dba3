"""The rollup relations: their columns, and the SQL that creates them in each storage tier.

Every tier exposes the same relations, `metrics_rollup_<entity>_<resolution>` for entity in
node / pod / namespace / deployment and resolution 1m / 1h, with the same columns
(docs/architecture.md). Every column is a sum (or the max of the working set), so a coarser
bucket is the sum of its finer buckets and a namespace is the sum of its pods, exactly:

* tier `tsl`: continuous aggregates, 1m on the raw samples, 1h on the 1m aggregate
  (hierarchical), real-time (`materialized_only = false`);
* tiers `apache` / `plain`: tables `<name>_mat` filled by metrics.rollups.refresh(), and views
  with the public names returning the materialized buckets before the refresh watermark plus the
  newest raw data aggregated on the fly, like TimescaleDB's real-time aggregation.

The DDL that creates them lives in the frozen snapshot metrics/migrations/snapshots/rollups_0003.py,
which migration 0003 runs; this live copy holds what the refresh and retention use. Changing a
definition here needs a new snapshot and a new migration that drops and recreates the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass


from metrics.backend import bucket_expression

RESOLUTIONS = {"1m": "1 minute", "1h": "1 hour"}
ENTITIES = ("node", "pod", "namespace", "deployment")
STATE_TABLE = "metrics_rollup_state"
INVALIDATION_TABLE = "metrics_rollup_invalidation"

F8 = "double precision"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    raw: str  # aggregate over raw sample rows
    finer: str  # aggregate over rows of the finer rollup (1m -> 1h, pod -> namespace)


def _sum(name: str, raw: str) -> Column:
    return Column(name, F8, f"sum({raw})", f"sum({name})")


COMMON = [
    Column("samples", "bigint", "count(*)", "sum(samples)::bigint"),
    _sum("covered_seconds", "interval_seconds"),
    _sum("cpu_seconds", "cpu_seconds"),
    _sum("memory_working_set_byte_seconds", "memory_working_set_bytes * interval_seconds"),
    _sum("memory_rss_byte_seconds", "memory_rss_bytes * interval_seconds"),
    _sum("memory_cache_byte_seconds", "memory_cache_bytes * interval_seconds"),
    Column(
        "memory_working_set_max_bytes",
        "bigint",
        "max(memory_working_set_bytes)",
        "max(memory_working_set_max_bytes)",
    ),
    _sum("disk_read_bytes", "disk_read_bytes::double precision"),
    _sum("disk_write_bytes", "disk_write_bytes::double precision"),
    _sum("net_rx_bytes", "net_rx_bytes::double precision"),
    _sum("net_tx_bytes", "net_tx_bytes::double precision"),
    _sum("cpu_throttled_seconds", "cpu_throttled_seconds"),
    Column("oom_kills", "bigint", "sum(oom_kills)::bigint", "sum(oom_kills)::bigint"),
]

# Only over samples that had both the limit and the usage, so used / limit is a true percentage.
LIMITS = [
    _sum("cpu_limited_seconds", "CASE WHEN cpu_limit_cores IS NOT NULL THEN cpu_seconds END"),
    _sum(
        "cpu_limit_core_seconds",
        "CASE WHEN cpu_seconds IS NOT NULL THEN cpu_limit_cores * interval_seconds END",
    ),
    _sum(
        "memory_limited_byte_seconds",
        "CASE WHEN memory_limit_bytes IS NOT NULL "
        "THEN memory_working_set_bytes * interval_seconds END",
    ),
    _sum(
        "memory_limit_byte_seconds",
        "CASE WHEN memory_working_set_bytes IS NOT NULL "
        "THEN memory_limit_bytes * interval_seconds END",
    ),
]

NODE_ONLY = [
    _sum("cpu_capacity_core_seconds", "cpu_capacity_cores * interval_seconds"),
    _sum("memory_total_byte_seconds", "memory_total_bytes * interval_seconds"),
    _sum("memory_available_byte_seconds", "memory_available_bytes * interval_seconds"),
    _sum("fs_used_byte_seconds", "fs_used_bytes * interval_seconds"),
    _sum("fs_capacity_byte_seconds", "fs_capacity_bytes * interval_seconds"),
]


@dataclass(frozen=True)
class Entity:
    name: str
    source: str  # raw sample table
    keys: tuple[tuple[str, str], ...]  # (column, type)
    columns: tuple[Column, ...]
    where: str = ""  # filter on raw rows

    def relation(self, resolution: str) -> str:
        return f"metrics_rollup_{self.name}_{resolution}"

    def key_names(self) -> list[str]:
        return [k for k, _ in self.keys]


ENTITY = {
    "node": Entity(
        "node", "metrics_nodesample", (("node_id", "bigint"),), tuple(COMMON + NODE_ONLY)
    ),
    "pod": Entity(
        "pod",
        "metrics_podsample",
        (
            ("pod_id", "bigint"),
            ("node_id", "bigint"),
            ("namespace", "varchar(253)"),
            ("deployment", "varchar(253)"),
        ),
        tuple(COMMON + LIMITS),
    ),
    "namespace": Entity(
        "namespace", "metrics_podsample", (("namespace", "varchar(253)"),), tuple(COMMON + LIMITS)
    ),
    "deployment": Entity(
        "deployment",
        "metrics_podsample",
        (("namespace", "varchar(253)"), ("deployment", "varchar(253)")),
        tuple(COMMON + LIMITS),
        where="deployment IS NOT NULL",
    ),
}

# Secondary indexes on the rollups, beyond what the tier gives (reads filter by the keys).
INDEX_KEYS = {
    "node": ["node_id"],
    "pod": ["pod_id"],
    "namespace": ["namespace"],
    "deployment": ["namespace", "deployment"],
}


def select_from_raw(tier: str, entity: Entity, resolution: str, where: str = "") -> str:
    """SELECT aggregating raw samples into buckets (the 1m definition)."""
    bucket = bucket_expression(tier, RESOLUTIONS[resolution], '"time"')
    keys = entity.key_names()
    filters = [f for f in (entity.where, where) if f]
    return (
        f"SELECT {bucket} AS bucket, {', '.join(keys)}, "
        + ", ".join(f"{c.raw} AS {c.name}" for c in entity.columns)
        + f" FROM {entity.source}"
        + (f" WHERE {' AND '.join(filters)}" if filters else "")
        + f" GROUP BY 1, {', '.join(keys)}"
    )


def select_from_finer(
    tier: str, entity: Entity, resolution: str, source: str, where: str = ""
) -> str:
    """SELECT summing rollup rows of `source` (a finer resolution) into `resolution` buckets."""
    bucket = bucket_expression(tier, RESOLUTIONS[resolution], "bucket")
    keys = entity.key_names()
    return (
        f"SELECT {bucket} AS bucket, {', '.join(keys)}, "
        + ", ".join(f"{c.finer} AS {c.name}" for c in entity.columns)
        + f" FROM {source}"
        + (f" WHERE {where}" if where else "")
        + f" GROUP BY 1, {', '.join(keys)}"
    )


def column_list(entity: Entity) -> str:
    return ", ".join(["bucket", *entity.key_names(), *(c.name for c in entity.columns)])


# --- tier tsl: policies ------------------------------------------------------------------------

# Refresh policies. Both reach back over the whole raw retention: a range below an aggregate's
# watermark that was never materialized would otherwise stay invisible (created WITH NO DATA over
# existing samples, or a collector replaying a long spool), and TimescaleDB only does work where
# it logged invalidations, so the long window costs little. The 1h end_offset is a whole bucket:
# the 1h refresh must never run ahead of the 1m one.
REFRESH_POLICIES = {
    "1m": {"end_offset": "1 minute", "schedule_interval": "1 minute"},
    "1h": {"end_offset": "1 hour", "schedule_interval": "15 minutes"},
}
# Raw chunks are compressed once late data is unlikely; inserts into them still work, slower.
COMPRESS_AFTER = "2 days"


def retention_days() -> dict[str, int]:
    """Retention per relation kind from the settings (RETENTION_RAW_DAYS / _1M_ / _1H_)."""
    from django.conf import settings

    return {
        "raw": settings.RETENTION_RAW_DAYS,
        "1m": settings.RETENTION_1M_DAYS,
        "1h": settings.RETENTION_1H_DAYS,
    }
