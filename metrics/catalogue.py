"""Every served metric and every entity, defined once.

The rollup DDL of all three tiers (metrics/rollup_schema.py), the series and latest-usage SQL and
the points (metrics/series.py), the point fields of the serializers and OpenAPI
(metrics/api/serializers.py) and the admin's sample columns (metrics/admin.py) are all derived
from ENTITIES and METRICS below. Nothing else lists metric columns.

How to add a metric
-------------------
1. Make sure the sample tables carry the raw value (a model field and an ingest key).
2. Add ONE Metric to METRICS: its point field name, unit and help; how the point is computed
   from the bucket's sums (`point`: RATE = column / seconds reported x scale, RATIO = column /
   column x scale, LARGEST, TOTAL); its rollup column(s), written inline as Column(name, kind,
   expr); the entities that have it; optionally the sample field the admin lists. A column's
   kind says how it is summed:

   * USAGE  - what was used during the sample's interval (CPU-seconds, bytes, stall seconds,
     periods). A bucket gets it in proportion to the overlap of the interval with the bucket.
   * GAUGE  - a value held over the interval (bytes of memory, a limit, a percentage): it is
     weighted by the interval (value x seconds), and a bucket gets value x overlap.
   * EVENT  - a count that cannot be split (OOM kills): counted whole in the bucket the
     interval starts in.
   * MAX    - the largest value in the bucket (not spread).
   `expr` is SQL over one row of the sample table: the per-interval amount for USAGE/EVENT, the
   value for GAUGE and MAX. Cast bigint columns to float8 (a sum of bigint is numeric). A column
   several metrics read is a module constant (CPU, WORKING_SET, ...); a ratio whose parts may be
   missing counts each only where the other is known (_usage_where / _gauge_where).
   Entities fed by one sample table must agree (a namespace has what a pod has; the cluster what
   a node has); check() enforces it.
3. Write one migration with a new frozen snapshot of the rollups (see
   metrics/migrations/0005_catalogue_rollups.py and snapshots/rollups_0005.py): copy the newest
   snapshot, paste the new column lists (`python -m metrics.catalogue` prints them), and add the
   columns. metrics/tests/test_catalogue.py fails until the newest snapshot equals the catalogue.

Reading: `metrics_of(entity)`, `columns_of(entity)`, `sample_fields(entity)`, `METRIC[name]`,
`ENTITY[name]`.

Entities: cluster > node > pod > container, cluster > namespace > Deployment > pod, and node >
gpu (a GPU device or MIG instance, from metrics_gpusample), and for model servers serving (a
server pod) > serving_deployment > serving_namespace (metrics_servingsample). Each reads one raw sample table; node, pod, namespace and Deployment have 1m/1h rollups of their own, the
cluster sums the node rollups and containers have raw samples only (within RETENTION_RAW_DAYS).
"""

from __future__ import annotations

from dataclasses import dataclass

F8 = "double precision"
BIGINT = "bigint"

# Kinds of rollup column (see the module docstring).
USAGE = "usage"
GAUGE = "gauge"
EVENT = "event"
MAX = "max"
COUNT = "count"  # the number of samples; only `samples`

# How a point is computed from a bucket's sums.
RATE = "rate"  # sums[column] / seconds reported * scale
RATIO = "ratio"  # sums[numerator] / sums[denominator] * scale
LARGEST = "max"  # sums[column] as it is
TOTAL = "count"  # round(sums[column]) as an integer


@dataclass(frozen=True)
class Column:
    """One rollup column: a sum (or max) over the samples of a bucket."""

    name: str
    kind: str
    expr: str  # SQL over one sample row (see the module docstring)
    type: str = F8

    def rollup_from_raw(self) -> str:
        """Aggregate over raw sample rows into one rollup bucket (each sample counts whole in the
        bucket its interval starts in: rollup buckets are longer than any interval)."""
        if self.kind == COUNT:
            return "count(*)"
        if self.kind == MAX:
            return f"max({self.expr})"
        if self.kind == GAUGE:
            return f"sum(({self.expr}) * interval_seconds)"
        if self.kind == EVENT:
            return f"sum({self.expr})::bigint"
        return f"sum({self.expr})"

    def rollup_from_finer(self) -> str:
        """Aggregate over rows of a finer rollup (1m -> 1h, pod -> namespace)."""
        if self.kind == MAX:
            return f"max({self.name})"
        if self.type == BIGINT:
            return f"sum({self.name})::bigint"
        return f"sum({self.name})"

    def spread(self) -> str:
        """Aggregate over raw rows spread over step buckets: each row carries `ov`, the seconds
        its interval overlaps the bucket, and `first`, whether its interval starts there."""
        if self.kind == COUNT:
            return "count(*)::float8"
        if self.kind == MAX:
            return f"max({self.expr})::float8"
        if self.kind == GAUGE:
            return f"sum(({self.expr}) * ov)::float8"
        if self.kind == EVENT:
            return f"sum(CASE WHEN first THEN ({self.expr})::float8 END)"
        return f"sum(({self.expr}) * ov / interval_seconds)::float8"

    def one_sample(self) -> str:
        """The sum a single sample row contributes (the latest-usage reads)."""
        if self.kind == COUNT:
            return "1::float8"
        if self.kind == GAUGE:
            return f"(({self.expr}) * interval_seconds)::float8"
        return f"({self.expr})::float8"


def _gauge_where(name: str, value: str, known: str) -> Column:
    # Counted only where `known` is present, so that a ratio of two sums is a true percentage
    # when some samples lack one of them (cgroup v1 has no PSI, old collectors no periods).
    return Column(name, GAUGE, f"CASE WHEN {known} IS NOT NULL THEN {value} END")


def _usage_where(name: str, value: str, known: str) -> Column:
    return Column(name, USAGE, f"CASE WHEN {known} IS NOT NULL THEN {value} END")


# Every entity has these: how many samples a bucket holds, and the seconds they cover.
SAMPLES = Column("samples", COUNT, "*", BIGINT)
COVERED = Column("covered_seconds", GAUGE, "1.0::float8")
BASE_COLUMNS = (SAMPLES, COVERED)

# Columns more than one metric reads.
CPU = Column("cpu_seconds", USAGE, "cpu_seconds")
WORKING_SET = Column("memory_working_set_byte_seconds", GAUGE, "memory_working_set_bytes::float8")
CPU_CAPACITY = Column("cpu_capacity_core_seconds", GAUGE, "cpu_capacity_cores")
MEMORY_TOTAL = Column("memory_total_byte_seconds", GAUGE, "memory_total_bytes::float8")
# Limits count only where the usage is known (and the usage only where the limit is), so
# used / limit is a true percentage.
CPU_LIMIT = _gauge_where("cpu_limit_core_seconds", "cpu_limit_cores", "cpu_seconds")
MEMORY_LIMIT = _gauge_where("memory_limit_byte_seconds", "memory_limit_bytes::float8", "memory_working_set_bytes")
# Seconds of samples that reported each pressure file: the PSI percentages' denominators.
PSI_MEMORY = _gauge_where("psi_memory_seconds", "1.0::float8", "psi_memory_some_seconds")
PSI_IO = _gauge_where("psi_io_seconds", "1.0::float8", "psi_io_some_seconds")
GPU_MEMORY = Column("gpu_memory_byte_seconds", GAUGE, "gpu_memory_bytes::float8")


@dataclass(frozen=True)
class Entity:
    """A kind of thing with a series: where its samples are and how one is named."""

    name: str
    # Columns naming one entity in its raw table and rollups, e.g. ("namespace", "deployment").
    keys: tuple[str, ...]
    # Raw sample table it is read from.
    source: str
    parents: tuple[str, ...]
    # Its own 1m/1h rollups, keyed by these (column, SQL type); None: reads `rollup_of`'s or
    # has none (containers).
    rollup_keys: tuple[tuple[str, str], ...] | None = None
    rollup_where: str = ""  # filter on raw rows of its rollups
    rollup_of: str | None = None  # entity whose rollups it sums (the cluster: its nodes')
    # Sums over many pods or nodes: its rates are divided by the seconds its nodes reported
    # (see series._group_point), not by one entity's covered seconds.
    aggregate: bool = False

    def relation(self, resolution: str) -> str | None:
        base = self.name if self.rollup_keys else self.rollup_of
        return f"metrics_rollup_{base}_{resolution}" if base else None


_V = "varchar(253)"
ENTITIES: tuple[Entity, ...] = (
    # One cluster per installation (CLUSTER_NAME): every node reporting here.
    Entity("cluster", (), "metrics_nodesample", (), rollup_of="node", aggregate=True),
    Entity("node", ("node_id",), "metrics_nodesample", ("cluster",), rollup_keys=(("node_id", BIGINT),)),
    Entity(
        "namespace", ("namespace",), "metrics_podsample", ("cluster",),
        rollup_keys=(("namespace", _V),), aggregate=True,
    ),
    Entity(
        "deployment", ("namespace", "deployment"), "metrics_podsample", ("namespace",),
        rollup_keys=(("namespace", _V), ("deployment", _V)), rollup_where="deployment IS NOT NULL",
        aggregate=True,
    ),
    Entity(
        "pod", ("pod_id",), "metrics_podsample", ("node", "deployment"),
        rollup_keys=(("pod_id", BIGINT), ("node_id", BIGINT), ("namespace", _V), ("deployment", _V)),
    ),
    # Raw samples only (no rollups): container series reach back RETENTION_RAW_DAYS.
    Entity("container", ("container_id",), "metrics_containersample", ("pod",)),
    # One GPU or MIG instance (metrics/gpus.py, /api/gpus/): rollups per device.
    Entity(
        "gpu", ("device_id",), "metrics_gpusample", ("node",),
        rollup_keys=(("device_id", BIGINT), ("node_id", BIGINT)),
    ),
    # A vLLM / SGLang server pod (metrics_servingsample, metrics/serving.py), and the sums of its
    # Deployment's and namespace's server pods: /api/model-servers/ series.
    Entity(
        "serving", ("pod_id",), "metrics_servingsample", ("pod",),
        rollup_keys=(("pod_id", BIGINT), ("node_id", BIGINT), ("namespace", _V), ("deployment", _V)),
    ),
    Entity(
        "serving_namespace", ("namespace",), "metrics_servingsample", ("namespace",),
        rollup_keys=(("namespace", _V),), aggregate=True,
    ),
    Entity(
        "serving_deployment", ("namespace", "deployment"), "metrics_servingsample", ("deployment",),
        rollup_keys=(("namespace", _V), ("deployment", _V)), rollup_where="deployment IS NOT NULL",
        aggregate=True,
    ),
)
ENTITY = {e.name: e for e in ENTITIES}

NODE_LEVEL = frozenset({"node", "cluster"})
POD_LEVEL = frozenset({"pod", "namespace", "deployment"})
CONTAINER = frozenset({"container"})
ALL = NODE_LEVEL | POD_LEVEL | CONTAINER
GPU_DEVICE = frozenset({"gpu"})
SERVING = frozenset({"serving", "serving_namespace", "serving_deployment"})
# Entities whose points are the resource series' (series.POINTS); SERVING has its own.
RESOURCES = ALL | GPU_DEVICE
# Sums of pods: their rollups are built from another entity's 1m rows (metrics/rollups.py).
SUM_OF = {"namespace": "pod", "deployment": "pod", "serving_namespace": "serving", "serving_deployment": "serving"}


@dataclass(frozen=True)
class Metric:
    """One field of a point (a series bucket, or `usage`), and the rollup columns it reads."""

    name: str
    unit: str
    help: str
    point: str  # RATE, RATIO, LARGEST or TOTAL
    columns: tuple[Column, ...]  # RATE/LARGEST/TOTAL: (column,); RATIO: (numerator, denominator)
    entities: frozenset[str]
    scale: float = 1.0
    # The raw sample field the admin's sample lists show for it (None: not shown).
    sample_field: str | None = None
    integer: bool = False

    @property
    def kind(self) -> str:
        """USAGE, GAUGE, EVENT or MAX: the kind of its (first) column."""
        return self.columns[0].kind


LIMITED = POD_LEVEL | CONTAINER
M = Metric
METRICS: tuple[Metric, ...] = (
    M("cpu_millicores", "millicores",
      "CPU used: CPU-seconds per second of the seconds reported, x 1000 (summed over pods for groups, over nodes for the cluster).",
      RATE, (CPU,), ALL, 1000.0, sample_field="cpu_seconds"),
    M("memory_working_set_bytes", "bytes", "Time-weighted average over the bucket (summed over pods for groups).",
      RATE, (WORKING_SET,), ALL, sample_field="memory_working_set_bytes"),
    M("memory_working_set_max_bytes", "bytes", "Largest single sample in the bucket (of one pod, for groups).",
      LARGEST, (Column("memory_working_set_max_bytes", MAX, "memory_working_set_bytes", BIGINT),), ALL),
    M("disk_read_bytes_per_second", "bytes/s", "Bytes read per second.",
      RATE, (Column("disk_read_bytes", USAGE, "disk_read_bytes::float8"),), ALL, sample_field="disk_read_bytes"),
    M("disk_write_bytes_per_second", "bytes/s", "Bytes written per second.",
      RATE, (Column("disk_write_bytes", USAGE, "disk_write_bytes::float8"),), ALL, sample_field="disk_write_bytes"),
    # A container shares its pod's network namespace: network is counted on the pod only.
    M("net_rx_bytes_per_second", "bytes/s", "Bytes received per second (null for containers: counted on the pod).",
      RATE, (Column("net_rx_bytes", USAGE, "net_rx_bytes::float8"),), NODE_LEVEL | POD_LEVEL, sample_field="net_rx_bytes"),
    M("net_tx_bytes_per_second", "bytes/s", "Bytes sent per second (null for containers: counted on the pod).",
      RATE, (Column("net_tx_bytes", USAGE, "net_tx_bytes::float8"),), NODE_LEVEL | POD_LEVEL, sample_field="net_tx_bytes"),
    M("cpu_limit_millicores", "millicores", "CPU limit; for groups the sum over pods that have one.",
      RATE, (CPU_LIMIT,), LIMITED, 1000.0),
    M("cpu_percent_of_limit", "%", "CPU of limited pods as a percentage of their limits.",
      RATIO, (_usage_where("cpu_limited_seconds", "cpu_seconds", "cpu_limit_cores"), CPU_LIMIT), LIMITED, 100.0),
    M("memory_limit_bytes", "bytes", "Memory limit; for groups the sum over pods that have one.",
      RATE, (MEMORY_LIMIT,), LIMITED),
    M("memory_percent_of_limit", "%", "Working set of limited pods as a percentage of their limits.",
      RATIO, (_gauge_where("memory_limited_byte_seconds", "memory_working_set_bytes::float8", "memory_limit_bytes"),
              MEMORY_LIMIT), LIMITED, 100.0),
    # Pods and containers get these four from their node's capacity in the inventory
    # (series._capacity_from_node); namespaces and Deployments have none.
    M("cpu_capacity_millicores", "millicores",
      "The node's capacity (a pod: its node's; the cluster: its nodes'); null for namespaces and Deployments.",
      RATE, (CPU_CAPACITY,), NODE_LEVEL, 1000.0),
    M("cpu_percent_of_capacity", "%", "CPU used as a percentage of capacity.",
      RATIO, (CPU, CPU_CAPACITY), NODE_LEVEL, 100.0),
    M("memory_capacity_bytes", "bytes", "Memory capacity, as for CPU.",
      RATE, (MEMORY_TOTAL,), NODE_LEVEL),
    M("memory_percent_of_capacity", "%", "Working set as a percentage of capacity.",
      RATIO, (WORKING_SET, MEMORY_TOTAL), NODE_LEVEL, 100.0),
    M("memory_rss_bytes", "bytes", "Anonymous memory (RSS), time-weighted like the working set.",
      RATE, (Column("memory_rss_byte_seconds", GAUGE, "memory_rss_bytes::float8"),), ALL),
    M("memory_cache_bytes", "bytes", "Page cache, time-weighted like the working set.",
      RATE, (Column("memory_cache_byte_seconds", GAUGE, "memory_cache_bytes::float8"),), ALL),
    M("cpu_throttled_millicores", "millicores", "CPU time the CFS quota throttled, per second of the bucket, x 1000.",
      RATE, (Column("cpu_throttled_seconds", USAGE, "cpu_throttled_seconds"),), ALL, 1000.0,
      sample_field="cpu_throttled_seconds"),
    M("oom_kills", "count", "OOM kills in intervals that start in the bucket.",
      TOTAL, (Column("oom_kills", EVENT, "oom_kills", BIGINT),), ALL, sample_field="oom_kills", integer=True),
    # CFS periods, and of them those throttled: only from samples that have both.
    M("cpu_throttled_percent_of_periods", "%",
      "Share of CFS periods in which the quota throttled (of samples that report periods).",
      RATIO, (_usage_where("cpu_throttled_periods", "cpu_throttled_periods::float8", "cpu_periods"),
              _usage_where("cpu_periods", "cpu_periods::float8", "cpu_throttled_periods")), ALL, 100.0),
    M("psi_cpu_some_percent", "%",
      "Share of time some task waited for CPU (pressure stall, PSI), over the samples that report it; "
      "for groups and the cluster the mean over their members.",
      RATIO, (Column("psi_cpu_some_seconds", USAGE, "psi_cpu_some_seconds"),
              _gauge_where("psi_cpu_seconds", "1.0::float8", "psi_cpu_some_seconds")), ALL, 100.0,
      sample_field="psi_cpu_some_seconds"),
    M("psi_memory_some_percent", "%", "Share of time some task waited for memory (PSI), as for CPU.",
      RATIO, (Column("psi_memory_some_seconds", USAGE, "psi_memory_some_seconds"), PSI_MEMORY), ALL, 100.0),
    M("psi_memory_full_percent", "%", "Share of time all tasks waited for memory at once (PSI), as for CPU.",
      RATIO, (Column("psi_memory_full_seconds", USAGE, "psi_memory_full_seconds"), PSI_MEMORY), ALL, 100.0),
    M("psi_io_some_percent", "%", "Share of time some task waited for I/O (PSI), as for CPU.",
      RATIO, (Column("psi_io_some_seconds", USAGE, "psi_io_some_seconds"), PSI_IO), ALL, 100.0),
    M("psi_io_full_percent", "%", "Share of time all tasks waited for I/O at once (PSI), as for CPU.",
      RATIO, (Column("psi_io_full_seconds", USAGE, "psi_io_full_seconds"), PSI_IO), ALL, 100.0),
    M("gpu_utilization_percent", "%",
      "GPU utilisation, time-weighted over the samples that carry it: a node's mean over its devices; a pod's or "
      "container's in % of one GPU, summed over devices; groups and the cluster: the mean over their members "
      "that report it; a GPU device: its own.",
      RATIO, (Column("gpu_utilization_percent_seconds", GAUGE, "gpu_utilization_percent"),
              _gauge_where("gpu_seconds", "1.0::float8", "gpu_utilization_percent")), ALL | GPU_DEVICE,
      sample_field="gpu_utilization_percent"),
    M("gpu_memory_bytes", "bytes", "GPU memory used, time-weighted like the working set (summed over pods for groups).",
      RATE, (GPU_MEMORY,), ALL | GPU_DEVICE, sample_field="gpu_memory_bytes"),
    M("memory_available_bytes", "bytes", "Memory the node's kernel reports available, time-weighted.",
      RATE, (Column("memory_available_byte_seconds", GAUGE, "memory_available_bytes::float8"),), NODE_LEVEL),
    M("fs_used_bytes", "bytes", "Root filesystem used, time-weighted.",
      RATE, (Column("fs_used_byte_seconds", GAUGE, "fs_used_bytes::float8"),), NODE_LEVEL),
    M("fs_capacity_bytes", "bytes", "Root filesystem size, time-weighted.",
      RATE, (Column("fs_capacity_byte_seconds", GAUGE, "fs_capacity_bytes::float8"),), NODE_LEVEL),
    # GPU devices only (metrics_gpusample, the entity `gpu`).
    M("gpu_memory_percent_of_device", "%", "A GPU device's memory used as a percentage of its memory.",
      RATIO, (GPU_MEMORY, _gauge_where("gpu_memory_total_byte_seconds", "gpu_memory_total_bytes::float8",
                                       "gpu_memory_bytes")), GPU_DEVICE, 100.0),
    M("gpu_memory_max_bytes", "bytes", "A GPU device's largest memory use in the bucket.",
      LARGEST, (Column("gpu_memory_max_bytes", MAX, "gpu_memory_bytes", BIGINT),), GPU_DEVICE),
    M("gpu_power_watts", "W", "A GPU device's power draw, time-weighted over the samples that carry it.",
      RATIO, (Column("gpu_power_watt_seconds", GAUGE, "gpu_power_watts"),
              _gauge_where("gpu_power_seconds", "1.0::float8", "gpu_power_watts")), GPU_DEVICE,
      sample_field="gpu_power_watts"),
    M("gpu_temperature_celsius", "°C", "A GPU device's temperature, time-weighted over the samples that carry it.",
      RATIO, (Column("gpu_temperature_celsius_seconds", GAUGE, "gpu_temperature_celsius"),
              _gauge_where("gpu_temperature_seconds", "1.0::float8", "gpu_temperature_celsius")), GPU_DEVICE,
      sample_field="gpu_temperature_celsius"),
)


def _latency(name: str, what: str) -> tuple[Metric, Metric]:
    return (
        M(f"{name}_mean_seconds", "s", f"Mean {what} of the requests in the bucket (sum of latencies / count).",
          RATIO, (Column(f"{name}_seconds_sum", USAGE, f"{name}_seconds_sum"),
                  _usage_where(f"{name}_count", f"{name}_count::float8", f"{name}_seconds_sum")), SERVING),
        M(f"{name}_p95_seconds", "s",
          f"The highest interval p95 {what} in the bucket (of one replica): an upper bound, percentiles do not add.",
          LARGEST, (Column(f"{name}_p95_seconds", MAX, f"{name}_p95_seconds"),), SERVING),
    )


# Model servers (metrics_servingsample; the entities SERVING). Counters are usage during the
# interval, spread by overlap like CPU-seconds; a pod's rate is over the seconds it reported, a
# Deployment's or namespace's the sum over its server pods, over the seconds their nodes reported.
PROMPT_TOKENS = Column("prompt_tokens", USAGE, "prompt_tokens::float8")
GENERATION_TOKENS = Column("generation_tokens", USAGE, "generation_tokens::float8")
REQUESTS_SUCCEEDED = Column("requests_succeeded", USAGE, "requests_succeeded::float8")
SERVING_METRICS: tuple[Metric, ...] = (
    M("replicas", "pods", "Server pods reporting, time-weighted (1 for a pod that reported).",
      RATE, (COVERED,), SERVING),
    M("prompt_tokens", "tokens", "Prompt tokens processed in the bucket.", LARGEST, (PROMPT_TOKENS,), SERVING),
    M("generation_tokens", "tokens", "Tokens generated in the bucket.", LARGEST, (GENERATION_TOKENS,), SERVING),
    M("requests_succeeded", "requests", "Requests completed in the bucket.", LARGEST, (REQUESTS_SUCCEEDED,), SERVING),
    M("preemptions", "count", "Preemptions in the bucket.",
      LARGEST, (Column("preemptions", USAGE, "preemptions::float8"),), SERVING),
    M("prompt_tokens_per_second", "tokens/s", "Prompt tokens per second.", RATE, (PROMPT_TOKENS,), SERVING),
    M("generation_tokens_per_second", "tokens/s", "Generated tokens per second.",
      RATE, (GENERATION_TOKENS,), SERVING),
    M("requests_per_second", "requests/s", "Requests completed per second.", RATE, (REQUESTS_SUCCEEDED,), SERVING),
    M("requests_running", "requests", "Requests running, time-weighted (summed over replicas).",
      RATE, (Column("requests_running_seconds", GAUGE, "requests_running"),), SERVING),
    M("requests_waiting", "requests", "Requests waiting, time-weighted (summed over replicas).",
      RATE, (Column("requests_waiting_seconds", GAUGE, "requests_waiting"),), SERVING),
    M("kv_cache_usage_percent", "%",
      "KV cache in use, time-weighted over the samples that carry it (the mean over replicas).",
      RATIO, (Column("kv_cache_percent_seconds", GAUGE, "kv_cache_usage_percent"),
              _gauge_where("kv_cache_seconds", "1.0::float8", "kv_cache_usage_percent")), SERVING),
    *_latency("ttft", "time to first token"),
    *_latency("itl", "inter-token latency"),
    *_latency("e2e", "end-to-end request latency"),
    M("restarts", "count", "Server restarts (counters going down) in intervals that start in the bucket.",
      TOTAL, (Column("restarts", EVENT, "CASE WHEN restarted THEN 1 ELSE 0 END", BIGINT),), SERVING,
      integer=True),
)
METRICS = METRICS + SERVING_METRICS
METRIC = {m.name: m for m in METRICS}


def _all_columns() -> tuple[Column, ...]:
    seen: dict[str, Column] = {}
    for column in (*BASE_COLUMNS, *(c for m in METRICS for c in m.columns)):
        seen.setdefault(column.name, column)
    return tuple(seen.values())


# Every rollup column, in the order the rollup relations have them: the base columns, then each
# metric's in METRICS order (a column shared by several metrics where it first appears).
COLUMNS = _all_columns()
COLUMN = {c.name: c for c in COLUMNS}


def metrics_of(entity: str) -> tuple[Metric, ...]:
    """The metrics computed from an entity's sums, in METRICS order."""
    return tuple(m for m in METRICS if entity in m.entities)


def columns_of(entity: str) -> tuple[Column, ...]:
    """The sums an entity's points need, in COLUMNS order (the rollup columns of its relation)."""
    wanted = {c.name for c in BASE_COLUMNS}
    for metric in metrics_of(entity):
        wanted.update(c.name for c in metric.columns)
    return tuple(c for c in COLUMNS if c.name in wanted)


def sample_fields(entity: str) -> tuple[str, ...]:
    """Raw sample fields the admin lists for an entity's sample table."""
    return tuple(m.sample_field for m in metrics_of(entity) if m.sample_field)


def check() -> None:
    """Fail on an inconsistent catalogue (run by metrics/tests/test_catalogue.py)."""
    for metric in METRICS:
        # One definition per column name: two different columns of one name would silently
        # lose one of them.
        assert all(COLUMN[c.name] == c for c in metric.columns), metric.name
        assert len(metric.columns) == (2 if metric.point == RATIO else 1), metric.name
        assert metric.entities <= RESOURCES or metric.entities <= SERVING, metric.name
    for entity in ENTITIES:
        assert set(entity.parents) <= set(ENTITY), entity.name
        # Entities read from another's rollups can only have that entity's columns.
        if entity.rollup_of:
            assert set(columns_of(entity.name)) <= set(columns_of(entity.rollup_of)), entity.name
    # Namespaces and Deployments are sums of pod rows (the refresh builds them from pod rollups).
    for name, of in SUM_OF.items():
        assert columns_of(name) == columns_of(of), name
        assert ENTITY[name].source == ENTITY[of].source, name


def snapshot_columns() -> str:
    """The rollup columns as Python literals, to paste into a new frozen snapshot."""
    import json

    lines = []
    for name, entity in (("NODE_COLUMNS", "node"), ("POD_COLUMNS", "pod"), ("GPU_COLUMNS", "gpu"),
                           ("SERVING_COLUMNS", "serving")):
        lines.append(f"{name} = [")
        for c in columns_of(entity):
            args = ", ".join(json.dumps(v) for v in (c.name, c.type, c.rollup_from_raw(), c.rollup_from_finer()))
            lines.append(f"    Column({args}),")
        lines.append("]")
    return "\n".join(lines)


if __name__ == "__main__":
    print(snapshot_columns())
