"""FROZEN SNAPSHOT for migration 0005: the rollup relations with the catalogue's columns.

Never edit this file: migration 0005 must do the same on a fresh database forever. A change to
the rollups is a new snapshot and a new migration. The column lists were printed by
`python -m metrics.catalogue` at 0005 (metrics/catalogue.py is the live definition);
metrics/tests/test_catalogue.py checks that the newest snapshot still equals it.

0005 adds throttled CFS periods, pressure stall (PSI) seconds, GPU utilisation and memory,
available memory and filesystem use to the rollups of 0003 (rollups_0003.py):

* tiers `apache` / `plain`: the `<name>_mat` tables keep their rows (history older than the raw
  retention survives) and get the new columns; the views are recreated with them; the whole
  range still held in raw samples is logged as invalidated, so the next refresh recomputes it
  and fills the new columns (older buckets keep null there: unknown);
* tier `tsl`: continuous aggregates cannot gain columns, so they are dropped and created again
  (WITH NO DATA; their refresh policies reach back over the raw retention, and real-time
  aggregation serves the unmaterialized range meanwhile). Buckets older than the raw retention
  are lost there.

Both are reversible to the 0003 definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
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


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    raw: str  # aggregate over raw sample rows
    finer: str  # aggregate over rows of the finer rollup (1m -> 1h, pod -> namespace)


# Nodes (the cluster sums them).
NODE_COLUMNS = [
    Column("samples", "bigint", "count(*)", "sum(samples)::bigint"),
    Column("covered_seconds", "double precision", "sum((1.0::float8) * interval_seconds)", "sum(covered_seconds)"),
    Column("cpu_seconds", "double precision", "sum(cpu_seconds)", "sum(cpu_seconds)"),
    Column("memory_working_set_byte_seconds", "double precision", "sum((memory_working_set_bytes::float8) * interval_seconds)", "sum(memory_working_set_byte_seconds)"),
    Column("memory_working_set_max_bytes", "bigint", "max(memory_working_set_bytes)", "max(memory_working_set_max_bytes)"),
    Column("disk_read_bytes", "double precision", "sum(disk_read_bytes::float8)", "sum(disk_read_bytes)"),
    Column("disk_write_bytes", "double precision", "sum(disk_write_bytes::float8)", "sum(disk_write_bytes)"),
    Column("net_rx_bytes", "double precision", "sum(net_rx_bytes::float8)", "sum(net_rx_bytes)"),
    Column("net_tx_bytes", "double precision", "sum(net_tx_bytes::float8)", "sum(net_tx_bytes)"),
    Column("cpu_capacity_core_seconds", "double precision", "sum((cpu_capacity_cores) * interval_seconds)", "sum(cpu_capacity_core_seconds)"),
    Column("memory_total_byte_seconds", "double precision", "sum((memory_total_bytes::float8) * interval_seconds)", "sum(memory_total_byte_seconds)"),
    Column("memory_rss_byte_seconds", "double precision", "sum((memory_rss_bytes::float8) * interval_seconds)", "sum(memory_rss_byte_seconds)"),
    Column("memory_cache_byte_seconds", "double precision", "sum((memory_cache_bytes::float8) * interval_seconds)", "sum(memory_cache_byte_seconds)"),
    Column("cpu_throttled_seconds", "double precision", "sum(cpu_throttled_seconds)", "sum(cpu_throttled_seconds)"),
    Column("oom_kills", "bigint", "sum(oom_kills)::bigint", "sum(oom_kills)::bigint"),
    Column("cpu_throttled_periods", "double precision", "sum(CASE WHEN cpu_periods IS NOT NULL THEN cpu_throttled_periods::float8 END)", "sum(cpu_throttled_periods)"),
    Column("cpu_periods", "double precision", "sum(CASE WHEN cpu_throttled_periods IS NOT NULL THEN cpu_periods::float8 END)", "sum(cpu_periods)"),
    Column("psi_cpu_some_seconds", "double precision", "sum(psi_cpu_some_seconds)", "sum(psi_cpu_some_seconds)"),
    Column("psi_cpu_seconds", "double precision", "sum((CASE WHEN psi_cpu_some_seconds IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(psi_cpu_seconds)"),
    Column("psi_memory_some_seconds", "double precision", "sum(psi_memory_some_seconds)", "sum(psi_memory_some_seconds)"),
    Column("psi_memory_seconds", "double precision", "sum((CASE WHEN psi_memory_some_seconds IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(psi_memory_seconds)"),
    Column("psi_memory_full_seconds", "double precision", "sum(psi_memory_full_seconds)", "sum(psi_memory_full_seconds)"),
    Column("psi_io_some_seconds", "double precision", "sum(psi_io_some_seconds)", "sum(psi_io_some_seconds)"),
    Column("psi_io_seconds", "double precision", "sum((CASE WHEN psi_io_some_seconds IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(psi_io_seconds)"),
    Column("psi_io_full_seconds", "double precision", "sum(psi_io_full_seconds)", "sum(psi_io_full_seconds)"),
    Column("gpu_utilization_percent_seconds", "double precision", "sum((gpu_utilization_percent) * interval_seconds)", "sum(gpu_utilization_percent_seconds)"),
    Column("gpu_seconds", "double precision", "sum((CASE WHEN gpu_utilization_percent IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(gpu_seconds)"),
    Column("gpu_memory_byte_seconds", "double precision", "sum((gpu_memory_bytes::float8) * interval_seconds)", "sum(gpu_memory_byte_seconds)"),
    Column("memory_available_byte_seconds", "double precision", "sum((memory_available_bytes::float8) * interval_seconds)", "sum(memory_available_byte_seconds)"),
    Column("fs_used_byte_seconds", "double precision", "sum((fs_used_bytes::float8) * interval_seconds)", "sum(fs_used_byte_seconds)"),
    Column("fs_capacity_byte_seconds", "double precision", "sum((fs_capacity_bytes::float8) * interval_seconds)", "sum(fs_capacity_byte_seconds)"),
]

# Pods, namespaces and Deployments (a namespace is the sum of its pods).
POD_COLUMNS = [
    Column("samples", "bigint", "count(*)", "sum(samples)::bigint"),
    Column("covered_seconds", "double precision", "sum((1.0::float8) * interval_seconds)", "sum(covered_seconds)"),
    Column("cpu_seconds", "double precision", "sum(cpu_seconds)", "sum(cpu_seconds)"),
    Column("memory_working_set_byte_seconds", "double precision", "sum((memory_working_set_bytes::float8) * interval_seconds)", "sum(memory_working_set_byte_seconds)"),
    Column("memory_working_set_max_bytes", "bigint", "max(memory_working_set_bytes)", "max(memory_working_set_max_bytes)"),
    Column("disk_read_bytes", "double precision", "sum(disk_read_bytes::float8)", "sum(disk_read_bytes)"),
    Column("disk_write_bytes", "double precision", "sum(disk_write_bytes::float8)", "sum(disk_write_bytes)"),
    Column("net_rx_bytes", "double precision", "sum(net_rx_bytes::float8)", "sum(net_rx_bytes)"),
    Column("net_tx_bytes", "double precision", "sum(net_tx_bytes::float8)", "sum(net_tx_bytes)"),
    Column("cpu_limit_core_seconds", "double precision", "sum((CASE WHEN cpu_seconds IS NOT NULL THEN cpu_limit_cores END) * interval_seconds)", "sum(cpu_limit_core_seconds)"),
    Column("cpu_limited_seconds", "double precision", "sum(CASE WHEN cpu_limit_cores IS NOT NULL THEN cpu_seconds END)", "sum(cpu_limited_seconds)"),
    Column("memory_limit_byte_seconds", "double precision", "sum((CASE WHEN memory_working_set_bytes IS NOT NULL THEN memory_limit_bytes::float8 END) * interval_seconds)", "sum(memory_limit_byte_seconds)"),
    Column("memory_limited_byte_seconds", "double precision", "sum((CASE WHEN memory_limit_bytes IS NOT NULL THEN memory_working_set_bytes::float8 END) * interval_seconds)", "sum(memory_limited_byte_seconds)"),
    Column("memory_rss_byte_seconds", "double precision", "sum((memory_rss_bytes::float8) * interval_seconds)", "sum(memory_rss_byte_seconds)"),
    Column("memory_cache_byte_seconds", "double precision", "sum((memory_cache_bytes::float8) * interval_seconds)", "sum(memory_cache_byte_seconds)"),
    Column("cpu_throttled_seconds", "double precision", "sum(cpu_throttled_seconds)", "sum(cpu_throttled_seconds)"),
    Column("oom_kills", "bigint", "sum(oom_kills)::bigint", "sum(oom_kills)::bigint"),
    Column("cpu_throttled_periods", "double precision", "sum(CASE WHEN cpu_periods IS NOT NULL THEN cpu_throttled_periods::float8 END)", "sum(cpu_throttled_periods)"),
    Column("cpu_periods", "double precision", "sum(CASE WHEN cpu_throttled_periods IS NOT NULL THEN cpu_periods::float8 END)", "sum(cpu_periods)"),
    Column("psi_cpu_some_seconds", "double precision", "sum(psi_cpu_some_seconds)", "sum(psi_cpu_some_seconds)"),
    Column("psi_cpu_seconds", "double precision", "sum((CASE WHEN psi_cpu_some_seconds IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(psi_cpu_seconds)"),
    Column("psi_memory_some_seconds", "double precision", "sum(psi_memory_some_seconds)", "sum(psi_memory_some_seconds)"),
    Column("psi_memory_seconds", "double precision", "sum((CASE WHEN psi_memory_some_seconds IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(psi_memory_seconds)"),
    Column("psi_memory_full_seconds", "double precision", "sum(psi_memory_full_seconds)", "sum(psi_memory_full_seconds)"),
    Column("psi_io_some_seconds", "double precision", "sum(psi_io_some_seconds)", "sum(psi_io_some_seconds)"),
    Column("psi_io_seconds", "double precision", "sum((CASE WHEN psi_io_some_seconds IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(psi_io_seconds)"),
    Column("psi_io_full_seconds", "double precision", "sum(psi_io_full_seconds)", "sum(psi_io_full_seconds)"),
    Column("gpu_utilization_percent_seconds", "double precision", "sum((gpu_utilization_percent) * interval_seconds)", "sum(gpu_utilization_percent_seconds)"),
    Column("gpu_seconds", "double precision", "sum((CASE WHEN gpu_utilization_percent IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(gpu_seconds)"),
    Column("gpu_memory_byte_seconds", "double precision", "sum((gpu_memory_bytes::float8) * interval_seconds)", "sum(gpu_memory_byte_seconds)"),
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
    "node": Entity("node", "metrics_nodesample", (("node_id", "bigint"),), tuple(NODE_COLUMNS)),
    "pod": Entity(
        "pod",
        "metrics_podsample",
        (
            ("pod_id", "bigint"),
            ("node_id", "bigint"),
            ("namespace", "varchar(253)"),
            ("deployment", "varchar(253)"),
        ),
        tuple(POD_COLUMNS),
    ),
    "namespace": Entity(
        "namespace", "metrics_podsample", (("namespace", "varchar(253)"),), tuple(POD_COLUMNS)
    ),
    "deployment": Entity(
        "deployment",
        "metrics_podsample",
        (("namespace", "varchar(253)"), ("deployment", "varchar(253)")),
        tuple(POD_COLUMNS),
        where="deployment IS NOT NULL",
    ),
}

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


# --- tier tsl: continuous aggregates and their policies ----------------------------------------

REFRESH_POLICIES = {
    "1m": {"end_offset": "1 minute", "schedule_interval": "1 minute"},
    "1h": {"end_offset": "1 hour", "schedule_interval": "15 minutes"},
}


def retention_days() -> dict[str, int]:
    from django.conf import settings

    return {
        "raw": settings.RETENTION_RAW_DAYS,
        "1m": settings.RETENTION_1M_DAYS,
        "1h": settings.RETENTION_1H_DAYS,
    }


def create_caggs(cursor: Any, entities: dict[str, Any]) -> None:
    """Continuous aggregates of `entities` (this snapshot's ENTITY or 0003's), with policies."""
    days = retention_days()
    for entity in entities.values():
        for resolution in RESOLUTIONS:
            relation = entity.relation(resolution)
            if resolution == "1m":
                query = select_from_raw("tsl", entity, "1m")
            else:
                query = select_from_finer("tsl", entity, "1h", entity.relation("1m"))
            # WITH NO DATA: materializing here could take long on an existing database; the
            # refresh policy reaches back over the raw retention and real-time aggregation
            # serves what is not materialized yet.
            cursor.execute(
                f"CREATE MATERIALIZED VIEW {relation} "
                "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
                f"{query} WITH NO DATA"
            )
            cursor.execute(
                f"CREATE INDEX {relation}_keys ON {relation} "
                f"({', '.join(INDEX_KEYS[entity.name])}, bucket DESC)"
            )
            # The first runs wait one schedule interval: a job started at once would race a
            # migration that drops the aggregate right after (TimescaleDB then fails the DROP with
            # "tuple concurrently deleted"); real-time aggregation serves the data meanwhile.
            policy = REFRESH_POLICIES[resolution]
            cursor.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, "
                "start_offset => make_interval(days => %s), end_offset => %s::interval, "
                "schedule_interval => %s::interval, initial_start => now() + %s::interval)",
                [relation, days["raw"], policy["end_offset"], policy["schedule_interval"],
                 policy["schedule_interval"]],
            )
            cursor.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s), "
                "initial_start => now() + interval '1 hour')",
                [relation, days[resolution]],
            )


# A policy run in progress when its aggregate is dropped makes the DROP fail ("tuple concurrently
# deleted"); quiesce() waits this long at most for one to end.
QUIESCE_SECONDS = 300.0


def quiesce(cursor: Any, entities: dict[str, Any]) -> None:
    """Stop the policies of `entities`' aggregates and wait out any run in progress.

    Call it in autocommit: the scheduler must see the jobs unscheduled before we wait.
    """
    import time

    relations = [e.relation(r) for e in entities.values() for r in RESOLUTIONS]
    cursor.execute(
        "SELECT j.id FROM _timescaledb_config.bgw_job j "
        "JOIN _timescaledb_catalog.continuous_agg c ON j.hypertable_id = c.mat_hypertable_id "
        "WHERE c.user_view_name = ANY(%s)",
        [relations],
    )
    jobs = [row[0] for row in cursor.fetchall()]
    for job in jobs:
        cursor.execute("SELECT alter_job(%s, scheduled => false)", [job])
    deadline = time.monotonic() + QUIESCE_SECONDS
    while jobs and time.monotonic() < deadline:
        cursor.execute(
            "SELECT count(*) FROM timescaledb_information.job_stats "
            "WHERE job_id = ANY(%s) AND job_status = 'Running'",
            [jobs],
        )
        if not cursor.fetchone()[0]:
            return
        time.sleep(0.2)


def drop_caggs(cursor: Any, entities: dict[str, Any]) -> None:
    # 1h first: it is built on the 1m aggregate. Their policies go with them.
    for resolution in ("1h", "1m"):
        for entity in entities.values():
            cursor.execute(f"DROP MATERIALIZED VIEW IF EXISTS {entity.relation(resolution)}")


# --- tiers apache / plain: tables kept by the application + real-time views --------------------


def view_sql(tier: str, entity: Entity, resolution: str) -> str:
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


def _drop_views(cursor: Any, entities: dict[str, Any]) -> None:
    for resolution in ("1h", "1m"):  # the 1h views read the 1m views
        for entity in entities.values():
            cursor.execute(f"DROP VIEW IF EXISTS {entity.relation(resolution)}")


def _new_columns(old: ModuleType, name: str) -> list[Column]:
    kept = {c.name for c in old.ENTITY[name].columns}
    return [c for c in ENTITY[name].columns if c.name not in kept]


def upgrade_tables(cursor: Any, tier: str, old: ModuleType) -> None:
    """0003 -> 0005 in tiers apache / plain: add the columns, recreate the views, and log the
    range held in raw samples as invalidated so the next refresh fills the new columns."""
    _drop_views(cursor, old.ENTITY)
    for name, entity in ENTITY.items():
        added = _new_columns(old, name)
        for resolution in RESOLUTIONS:
            if added:
                cursor.execute(
                    f"ALTER TABLE {entity.relation(resolution)}_mat "
                    + ", ".join(f"ADD COLUMN {c.name} {c.type}" for c in added)
                )
    for resolution in RESOLUTIONS:
        for entity in ENTITY.values():
            cursor.execute(view_sql(tier, entity, resolution))
    cursor.execute(
        f"INSERT INTO {INVALIDATION_TABLE} (start_time, end_time) "
        "SELECT oldest, materialized_1m FROM (SELECT least("
        '(SELECT min("time") FROM metrics_podsample), (SELECT min("time") FROM metrics_nodesample)'
        f") AS oldest) raw, {STATE_TABLE} WHERE id = 1 AND oldest < materialized_1m"
    )


def downgrade_tables(cursor: Any, tier: str, old: ModuleType) -> None:
    """0005 -> 0003 in tiers apache / plain: the 0003 views over the 0003 columns."""
    _drop_views(cursor, ENTITY)
    for name, entity in ENTITY.items():
        added = _new_columns(old, name)
        for resolution in RESOLUTIONS:
            if added:
                cursor.execute(
                    f"ALTER TABLE {entity.relation(resolution)}_mat "
                    + ", ".join(f"DROP COLUMN {c.name}" for c in added)
                )
    for resolution in RESOLUTIONS:
        for entity in old.ENTITY.values():
            cursor.execute(old._view_sql(tier, entity, resolution))


def upgrade(connection: Any, old: ModuleType, tier: str) -> None:
    """0003 -> 0005. `connection` is in autocommit (the migration is not atomic): tier tsl first
    quiesces the old aggregates' policies; the changes themselves are one transaction."""
    from django.db import transaction

    if tier == "tsl":
        with connection.cursor() as cursor:
            quiesce(cursor, old.ENTITY)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if tier == "tsl":
            drop_caggs(cursor, old.ENTITY)
            create_caggs(cursor, ENTITY)
        else:
            upgrade_tables(cursor, tier, old)


def downgrade(connection: Any, old: ModuleType, tier: str) -> None:
    """0005 -> 0003, as upgrade()."""
    from django.db import transaction

    if tier == "tsl":
        with connection.cursor() as cursor:
            quiesce(cursor, ENTITY)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if tier == "tsl":
            drop_caggs(cursor, ENTITY)
            create_caggs(cursor, old.ENTITY)
        else:
            downgrade_tables(cursor, tier, old)
