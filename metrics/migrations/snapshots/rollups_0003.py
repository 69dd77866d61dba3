"""FROZEN SNAPSHOT for migration 0003: the rollup relations as that migration creates them.

Never edit this file: migration 0003 must do the same on a fresh database forever. A change to
the rollups is a new snapshot and a new migration (metrics/rollup_schema.py is the live copy the
refresh uses). Copied from metrics/rollup_schema.py at 0003, with bucket_expression inlined.

The rollup relations: their columns, and the SQL that creates them in each storage tier.

Every tier exposes the same relations, `metrics_rollup_<entity>_<resolution>` for entity in
node / pod / namespace / deployment and resolution 1m / 1h, with the same columns
(docs/architecture.md). Every column is a sum (or the max of the working set), so a coarser
bucket is the sum of its finer buckets and a namespace is the sum of its pods, exactly:

* tier `tsl`: continuous aggregates, 1m on the raw samples, 1h on the 1m aggregate
  (hierarchical), real-time (`materialized_only = false`);
* tiers `apache` / `plain`: tables `<name>_mat` filled by metrics.rollups.refresh(), and views
  with the public names returning the materialized buckets before the refresh watermark plus the
  newest raw data aggregated on the fly, like TimescaleDB's real-time aggregation.

Migration 0003 calls create_rollups() / drop_rollups(); changing a definition here needs a new
migration that drops and recreates the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any



def bucket_expression(tier: str, width: str, column: str) -> str:
    """SQL for the start of the `width` bucket (e.g. '1 minute') that `column` falls in."""
    if tier == "plain":
        return f"date_bin(INTERVAL '{width}', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    return f"time_bucket(INTERVAL '{width}', {column})"


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


# --- tier tsl: continuous aggregates -----------------------------------------------------------

def _create_caggs(cursor: Any) -> None:
    for entity in ENTITY.values():
        for resolution in RESOLUTIONS:
            if resolution == "1m":
                query = select_from_raw("tsl", entity, "1m")
            else:
                query = select_from_finer("tsl", entity, "1h", entity.relation("1m"))
            # WITH NO DATA: materializing here would need to run outside a transaction and could
            # take long on an existing database; the refresh policy and real-time part cover it.
            cursor.execute(
                f"CREATE MATERIALIZED VIEW {entity.relation(resolution)} "
                "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
                f"{query} WITH NO DATA"
            )
            cursor.execute(
                f"CREATE INDEX {entity.relation(resolution)}_keys ON {entity.relation(resolution)} "
                f"({', '.join(INDEX_KEYS[entity.name])}, bucket DESC)"
            )


def _drop_caggs(cursor: Any) -> None:
    # 1h first: it is built on the 1m aggregate.
    for resolution in ("1h", "1m"):
        for entity in ENTITY.values():
            cursor.execute(f"DROP MATERIALIZED VIEW IF EXISTS {entity.relation(resolution)}")


# --- tiers apache / plain: tables kept by the application + real-time views --------------------

def _create_tables_and_views(cursor: Any, tier: str) -> None:
    cursor.execute(
        f"""
        CREATE TABLE {STATE_TABLE} (
            id smallint PRIMARY KEY CHECK (id = 1),
            -- Late samples starting before this instant are logged in {INVALIDATION_TABLE}.
            -- It moves first, so an ingest racing a refresh logs its range rather than being
            -- missed (see metrics/rollups.py).
            invalidation_threshold timestamptz,
            -- The *_1m_mat tables hold every 1m bucket before this; the views aggregate raw
            -- samples from here on.
            materialized_1m timestamptz,
            -- The same for *_1h_mat; the 1h views sum 1m rows from here on.
            materialized_1h timestamptz,
            refreshed_at timestamptz
        )
        """
    )
    cursor.execute(f"INSERT INTO {STATE_TABLE} (id) VALUES (1)")
    cursor.execute(
        f"""
        CREATE TABLE {INVALIDATION_TABLE} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            -- Raw samples whose interval starts in [start_time, end_time) were written after
            -- their 1m buckets were materialized.
            start_time timestamptz NOT NULL,
            end_time timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    for entity in ENTITY.values():
        for resolution, width in RESOLUTIONS.items():
            mat = f"{entity.relation(resolution)}_mat"
            columns = ", ".join(
                ["bucket timestamptz NOT NULL"]
                + [f"{name} {type_}" for name, type_ in entity.keys]
                + [f"{c.name} {c.type}" for c in entity.columns]
            )
            cursor.execute(f"CREATE TABLE {mat} ({columns})")
            cursor.execute(
                f"CREATE INDEX {mat}_keys ON {mat} ({', '.join(INDEX_KEYS[entity.name])}, bucket DESC)"
            )
            if tier == "apache":
                # Chunks let retention drop whole days (1m) or weeks (1h) instead of deleting rows.
                chunk = "1 day" if resolution == "1m" else "7 days"
                cursor.execute(
                    "SELECT create_hypertable(%s::regclass, 'bucket', "
                    "chunk_time_interval => %s::interval)",
                    [mat, chunk],
                )
            else:
                # Rows arrive in bucket order, so a BRIN index serves refresh and retention
                # range deletes at almost no cost.
                cursor.execute(f"CREATE INDEX {mat}_bucket ON {mat} USING brin (bucket)")
    for entity in ENTITY.values():
        cursor.execute(_view_sql(tier, entity, "1m"))
        cursor.execute(_view_sql(tier, entity, "1h"))


def _view_sql(tier: str, entity: Entity, resolution: str) -> str:
    relation = entity.relation(resolution)
    columns = column_list(entity)
    mark = f"materialized_{resolution}"
    boundary = f"(SELECT coalesce({mark}, '-infinity') FROM {STATE_TABLE} WHERE id = 1)"
    if resolution == "1m":
        live = select_from_raw(tier, entity, "1m", where=f'"time" >= {boundary}')
    else:
        live = select_from_finer(
            tier, entity, "1h", entity.relation("1m"), where=f"bucket >= {boundary}"
        )
    return (
        f"CREATE VIEW {relation} AS "
        f"SELECT {columns} FROM {relation}_mat WHERE bucket < {boundary} "
        f"UNION ALL SELECT {columns} FROM ({live}) AS live"
    )


def _drop_tables_and_views(cursor: Any) -> None:
    for resolution in ("1h", "1m"):
        for entity in ENTITY.values():
            cursor.execute(f"DROP VIEW IF EXISTS {entity.relation(resolution)}")
    for resolution in ("1h", "1m"):
        for entity in ENTITY.values():
            cursor.execute(f"DROP TABLE IF EXISTS {entity.relation(resolution)}_mat")
    cursor.execute(f"DROP TABLE IF EXISTS {INVALIDATION_TABLE}")
    cursor.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")


def create_rollups(cursor: Any, tier: str) -> None:
    if tier == "tsl":
        _create_caggs(cursor)
    else:
        _create_tables_and_views(cursor, tier)


def drop_rollups(cursor: Any, tier: str) -> None:
    if tier == "tsl":
        _drop_caggs(cursor)
    else:
        _drop_tables_and_views(cursor)


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


def add_policies(cursor: Any, sample_tables: dict[str, str]) -> None:
    days = retention_days()
    for table, segment_by in sample_tables.items():
        cursor.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = '{segment_by}', "
            "timescaledb.compress_orderby = 'time DESC')"
        )
        cursor.execute(
            "SELECT add_compression_policy(%s::regclass, compress_after => %s::interval)",
            [table, COMPRESS_AFTER],
        )
        cursor.execute(
            "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s))",
            [table, days["raw"]],
        )
    for entity in ENTITY.values():
        for resolution, policy in REFRESH_POLICIES.items():
            relation = entity.relation(resolution)
            cursor.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, "
                "start_offset => make_interval(days => %s), end_offset => %s::interval, "
                "schedule_interval => %s::interval)",
                [relation, days["raw"], policy["end_offset"], policy["schedule_interval"]],
            )
            cursor.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s))",
                [relation, days[resolution]],
            )


def remove_policies(cursor: Any, sample_tables: dict[str, str]) -> None:
    """Undo add_policies on the raw tables (the aggregates' policies go with the aggregates)."""
    for table in sample_tables:
        cursor.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", [table])
        cursor.execute("SELECT remove_compression_policy(%s::regclass, if_exists => true)", [table])
        cursor.execute(
            f"SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks(%s::regclass) c",
            [table],
        )
        cursor.execute(f"ALTER TABLE {table} SET (timescaledb.compress = false)")
