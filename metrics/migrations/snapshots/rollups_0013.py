"""FROZEN SNAPSHOT for migration 0013: rollups per model-server pod, Deployment and namespace
(metrics_rollup_serving{,_deployment,_namespace}_{1m,1h}).

Never edit this file: migration 0013 must do the same on a fresh database forever. A change to
the rollups is a new snapshot and a new migration. The column lists were printed by
`python -m metrics.catalogue` at 0013 (metrics/catalogue.py is the live definition);
metrics/tests/test_catalogue.py checks that the newest snapshot still equals it.

0013 keeps every relation of 0007 (rollups_0007.py) as it is and adds the entities `serving`
(keyed by pod, like the pod rollups), `serving_namespace` and `serving_deployment`, from the
serving samples of migration 0009 (metrics_servingsample):

* tier `tsl`: six continuous aggregates (1m on the raw samples, 1h on the 1m aggregate) with
  their refresh and retention policies;
* tiers `apache` / `plain`: the `_mat` tables and the real-time views, as 0007 made them for the
  GPU devices; the next refresh fills them (it rebuilds the invalidated ranges, and the whole raw
  range of serving samples is logged as invalidated here).

Reversible: the serving rollups are dropped.
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
ENTITIES = ("node", "pod", "namespace", "deployment", "gpu", "serving", "serving_namespace", "serving_deployment")
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


# GPU devices and MIG instances (metrics_gpusample).
GPU_COLUMNS = [
    Column("samples", "bigint", "count(*)", "sum(samples)::bigint"),
    Column("covered_seconds", "double precision", "sum((1.0::float8) * interval_seconds)", "sum(covered_seconds)"),
    Column("gpu_utilization_percent_seconds", "double precision", "sum((gpu_utilization_percent) * interval_seconds)", "sum(gpu_utilization_percent_seconds)"),
    Column("gpu_seconds", "double precision", "sum((CASE WHEN gpu_utilization_percent IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(gpu_seconds)"),
    Column("gpu_memory_byte_seconds", "double precision", "sum((gpu_memory_bytes::float8) * interval_seconds)", "sum(gpu_memory_byte_seconds)"),
    Column("gpu_memory_total_byte_seconds", "double precision", "sum((CASE WHEN gpu_memory_bytes IS NOT NULL THEN gpu_memory_total_bytes::float8 END) * interval_seconds)", "sum(gpu_memory_total_byte_seconds)"),
    Column("gpu_memory_max_bytes", "bigint", "max(gpu_memory_bytes)", "max(gpu_memory_max_bytes)"),
    Column("gpu_power_watt_seconds", "double precision", "sum((gpu_power_watts) * interval_seconds)", "sum(gpu_power_watt_seconds)"),
    Column("gpu_power_seconds", "double precision", "sum((CASE WHEN gpu_power_watts IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(gpu_power_seconds)"),
    Column("gpu_temperature_celsius_seconds", "double precision", "sum((gpu_temperature_celsius) * interval_seconds)", "sum(gpu_temperature_celsius_seconds)"),
    Column("gpu_temperature_seconds", "double precision", "sum((CASE WHEN gpu_temperature_celsius IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(gpu_temperature_seconds)"),
]


# Model-server pods, and their sums per namespace and Deployment (metrics_servingsample).
SERVING_COLUMNS = [
    Column("samples", "bigint", "count(*)", "sum(samples)::bigint"),
    Column("covered_seconds", "double precision", "sum((1.0::float8) * interval_seconds)", "sum(covered_seconds)"),
    Column("prompt_tokens", "double precision", "sum(prompt_tokens::float8)", "sum(prompt_tokens)"),
    Column("generation_tokens", "double precision", "sum(generation_tokens::float8)", "sum(generation_tokens)"),
    Column("requests_succeeded", "double precision", "sum(requests_succeeded::float8)", "sum(requests_succeeded)"),
    Column("preemptions", "double precision", "sum(preemptions::float8)", "sum(preemptions)"),
    Column("requests_running_seconds", "double precision", "sum((requests_running) * interval_seconds)", "sum(requests_running_seconds)"),
    Column("requests_waiting_seconds", "double precision", "sum((requests_waiting) * interval_seconds)", "sum(requests_waiting_seconds)"),
    Column("kv_cache_percent_seconds", "double precision", "sum((kv_cache_usage_percent) * interval_seconds)", "sum(kv_cache_percent_seconds)"),
    Column("kv_cache_seconds", "double precision", "sum((CASE WHEN kv_cache_usage_percent IS NOT NULL THEN 1.0::float8 END) * interval_seconds)", "sum(kv_cache_seconds)"),
    Column("ttft_seconds_sum", "double precision", "sum(ttft_seconds_sum)", "sum(ttft_seconds_sum)"),
    Column("ttft_count", "double precision", "sum(CASE WHEN ttft_seconds_sum IS NOT NULL THEN ttft_count::float8 END)", "sum(ttft_count)"),
    Column("ttft_p95_seconds", "double precision", "max(ttft_p95_seconds)", "max(ttft_p95_seconds)"),
    Column("itl_seconds_sum", "double precision", "sum(itl_seconds_sum)", "sum(itl_seconds_sum)"),
    Column("itl_count", "double precision", "sum(CASE WHEN itl_seconds_sum IS NOT NULL THEN itl_count::float8 END)", "sum(itl_count)"),
    Column("itl_p95_seconds", "double precision", "max(itl_p95_seconds)", "max(itl_p95_seconds)"),
    Column("e2e_seconds_sum", "double precision", "sum(e2e_seconds_sum)", "sum(e2e_seconds_sum)"),
    Column("e2e_count", "double precision", "sum(CASE WHEN e2e_seconds_sum IS NOT NULL THEN e2e_count::float8 END)", "sum(e2e_count)"),
    Column("e2e_p95_seconds", "double precision", "max(e2e_p95_seconds)", "max(e2e_p95_seconds)"),
    Column("restarts", "bigint", "sum(CASE WHEN restarted THEN 1 ELSE 0 END)::bigint", "sum(restarts)::bigint"),
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
    "gpu": Entity(
        "gpu", "metrics_gpusample", (("device_id", "bigint"), ("node_id", "bigint")), tuple(GPU_COLUMNS)
    ),
    "serving": Entity(
        "serving",
        "metrics_servingsample",
        (
            ("pod_id", "bigint"),
            ("node_id", "bigint"),
            ("namespace", "varchar(253)"),
            ("deployment", "varchar(253)"),
        ),
        tuple(SERVING_COLUMNS),
    ),
    "serving_namespace": Entity(
        "serving_namespace", "metrics_servingsample", (("namespace", "varchar(253)"),), tuple(SERVING_COLUMNS)
    ),
    "serving_deployment": Entity(
        "serving_deployment",
        "metrics_servingsample",
        (("namespace", "varchar(253)"), ("deployment", "varchar(253)")),
        tuple(SERVING_COLUMNS),
        where="deployment IS NOT NULL",
    ),
}

INDEX_KEYS = {
    "node": ["node_id"],
    "pod": ["pod_id"],
    "namespace": ["namespace"],
    "deployment": ["namespace", "deployment"],
    "gpu": ["device_id"],
    "serving": ["pod_id"],
    "serving_namespace": ["namespace"],
    "serving_deployment": ["namespace", "deployment"],
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


SERVING = {name: ENTITY[name] for name in ("serving", "serving_namespace", "serving_deployment")}


def create_tables_and_views(cursor: Any, tier: str) -> None:
    """Tiers apache / plain: the serving rollups' _mat tables and views (as 0007 made the GPUs')."""
    for entity in SERVING.values():
        for resolution in RESOLUTIONS:
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
                chunk = "1 day" if resolution == "1m" else "7 days"
                cursor.execute(
                    "SELECT create_hypertable(%s::regclass, 'bucket', chunk_time_interval => %s::interval)",
                    [mat, chunk],
                )
            else:
                cursor.execute(f"CREATE INDEX {mat}_bucket ON {mat} USING brin (bucket)")
        for resolution in RESOLUTIONS:
            cursor.execute(view_sql(tier, entity, resolution))
    # Whatever serving samples exist already are below the watermark: have the next refresh add them.
    cursor.execute(
        f"INSERT INTO {INVALIDATION_TABLE} (start_time, end_time) "
        'SELECT oldest, materialized_1m FROM (SELECT min("time") AS oldest FROM metrics_servingsample) raw, '
        f"{STATE_TABLE} WHERE id = 1 AND oldest < materialized_1m"
    )


def drop_tables_and_views(cursor: Any) -> None:
    _drop_views(cursor, SERVING)
    for entity in SERVING.values():
        for resolution in RESOLUTIONS:
            cursor.execute(f"DROP TABLE IF EXISTS {entity.relation(resolution)}_mat")


def upgrade(connection: Any, tier: str) -> None:
    """0012 -> 0013: add the serving rollups, in one transaction."""
    from django.db import transaction

    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if tier == "tsl":
            create_caggs(cursor, SERVING)
        else:
            create_tables_and_views(cursor, tier)


def downgrade(connection: Any, tier: str) -> None:
    """0013 -> 0012: drop them (tier tsl first stops their policies, in autocommit)."""
    from django.db import transaction

    if tier == "tsl":
        with connection.cursor() as cursor:
            quiesce(cursor, SERVING)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if tier == "tsl":
            drop_caggs(cursor, SERVING)
        else:
            drop_tables_and_views(cursor)
