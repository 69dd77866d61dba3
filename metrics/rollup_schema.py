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

The columns come from the metric catalogue (metrics/catalogue.py). The DDL that creates them lives
in frozen snapshots (metrics/migrations/snapshots/rollups_0005.py, run by migration 0005); this
live copy holds what the refresh and retention use. A catalogue change needs a new snapshot and
migration (metrics/tests/test_catalogue.py compares the newest snapshot with this module).
"""

from __future__ import annotations

from dataclasses import dataclass

from metrics import catalogue
from metrics.backend import bucket_expression

RESOLUTIONS = {"1m": "1 minute", "1h": "1 hour"}
# The catalogue's entities with rollups of their own, pods before the groups built from them.
ENTITIES = ("node", "pod", "namespace", "deployment", "gpu", "serving", "serving_namespace", "serving_deployment")
# Entities built from raw samples; the others sum the 1m rows of another (catalogue.SUM_OF).
FROM_RAW = tuple(name for name in ENTITIES if name not in catalogue.SUM_OF)
STATE_TABLE = "metrics_rollup_state"
INVALIDATION_TABLE = "metrics_rollup_invalidation"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    raw: str  # aggregate over raw sample rows
    finer: str  # aggregate over rows of the finer rollup (1m -> 1h, pod -> namespace)


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


def _entity(entity: catalogue.Entity) -> Entity:
    assert entity.rollup_keys
    columns = tuple(
        Column(c.name, c.type, c.rollup_from_raw(), c.rollup_from_finer())
        for c in catalogue.columns_of(entity.name)
    )
    return Entity(entity.name, entity.source, entity.rollup_keys, columns, entity.rollup_where)


# The entities with rollups of their own, from the catalogue (the cluster sums the node rollups).
ENTITY = {name: _entity(catalogue.ENTITY[name]) for name in ENTITIES}

# Secondary indexes on the rollups, beyond what the tier gives (reads filter by the keys).
INDEX_KEYS = {name: list(catalogue.ENTITY[name].keys) for name in ENTITIES}


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
