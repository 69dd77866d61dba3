"""What a rule can watch: each metric is one set-based SQL query over the stored data that
returns every entity's value at once (never one query per entity).

A query returns rows of (namespace, deployment, pod, node, reason, value); the columns a level
does not have are NULL. Sample-based metrics read the rule's window of raw samples; inventory-based
ones (phase, readiness, container states, nodes not reporting) read the inventory as it is now.
Metrics whose data kubemonitor does not store yet say so in `needs` and are never evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

# Pods whose inventory row was refreshed within this long are current. Pod.last_seen is kept fresh
# to within a minute by ingest; two more minutes allow for slow collectors and late batches.
LIVE_POD = timedelta(minutes=3)
# Nodes silent for longer than this are taken as removed from the cluster, not as "not reporting"
# (delete the node in the admin to stop an alert sooner).
FORGOTTEN_NODE = timedelta(days=1)
# Waiting reasons that are a normal step of starting, not a problem.
STARTING_REASONS = ("ContainerCreating", "PodInitializing")

LEVELS = [
    ("node", "node"), ("pod", "pod"), ("deployment", "Deployment"), ("namespace", "namespace"),
    ("cluster", "cluster"), ("gpu", "GPU"), ("model_server", "model server"),
]
COMPARISONS = [(">", ">"), (">=", ">="), ("<", "<"), ("<=", "<="), ("==", "=="), ("!=", "!=")]

OUTPUT = ("namespace", "deployment", "pod", "node", "reason", "value")


@dataclass(frozen=True)
class Query:
    since: datetime  # now - the rule's window
    now: datetime
    level: str
    namespace: str = ""
    deployment: str = ""
    node: str = ""
    pod_labels: dict[str, str] | None = None
    model_server_kind: str = ""  # vllm / sglang: model-server metrics only
    # Per-pod sums of the window computed once for every rule of the cycle (see shared_sums):
    # Ratio -> (table, num column, den column). Without them a rule scans its samples itself.
    sums: dict[Any, tuple[str, str, str]] | None = None


Builder = Callable[[Query], tuple[str, list[Any]]]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    levels: tuple[str, ...]
    build: Builder | None = None
    # Set while the data does not exist in kubemonitor: rules can be saved, never evaluated.
    needs: str = ""


# --- pieces ---------------------------------------------------------------------------------------

# Pod-level groups: (select list, group by). Samples carry namespace and Deployment (copied from
# the pod); the pod's name and labels come from the inventory, the node from the sample.
_POD_GROUPS = {
    "pod": ("p.namespace, p.deployment, p.name, n.name, NULL::text", "p.id, p.namespace, p.deployment, p.name, n.name"),
    "deployment": ("s.namespace, s.deployment, NULL::text, NULL::text, NULL::text", "s.namespace, s.deployment"),
    "namespace": ("s.namespace, NULL::text, NULL::text, NULL::text, NULL::text", "s.namespace"),
    "node": ("NULL::text, NULL::text, NULL::text, n.name, NULL::text", "n.name"),
    "cluster": ("NULL::text, NULL::text, NULL::text, NULL::text, NULL::text", ""),
}


def _pod_filters(q: Query, alias: str = "s") -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if q.namespace:
        where.append(f"{alias}.namespace = %s")
        params.append(q.namespace)
    if q.deployment:
        where.append(f"{alias}.deployment = %s")
        params.append(q.deployment)
    if q.node:
        where.append("n.name = %s")
        params.append(q.node)
    if q.pod_labels:
        where.append("p.labels @> %s::jsonb")
        params.append(json.dumps(q.pod_labels))
    if q.level == "deployment":
        where.append(f"{alias}.deployment IS NOT NULL")
    return where, params


@dataclass(frozen=True)
class Ratio:
    """scale * sum(num) / sum(den * factor) over the window's samples, per entity or group.

    num and den are per-sample SQL on `s` (the sample); factor is SQL on `n` (the sample's node,
    for "of node capacity"), applied after the per-pod sums so the samples are never joined.
    Terms count only where both sides are known, so a ratio is a true percentage.
    """

    num: str
    den: str
    factor: str = "1"
    scale: float = 100.0


def ratio(used: str, of: str, factor: str = "1") -> Ratio:
    return Ratio(f"CASE WHEN ({of}) IS NOT NULL THEN {used} END", f"CASE WHEN ({used}) IS NOT NULL THEN {of} END",
                 factor)


def average(column: str) -> Ratio:
    return Ratio(f"{column} * s.interval_seconds", f"CASE WHEN {column} IS NOT NULL THEN s.interval_seconds END",
                 scale=1.0)


class _PodSamples:
    """Two stages: the window's samples summed per pod (one scan, no join), then the pods joined
    to the inventory for selectors and labels and summed per group."""

    def __init__(self, r: Ratio) -> None:
        self.ratio = r

    def ratio_for(self, level: str) -> Ratio | None:
        return self.ratio

    def __call__(self, q: Query) -> tuple[str, list[Any]]:
        r = self.ratio
        select, group = _POD_GROUPS[q.level]
        select, group = select.replace("s.", "p."), group.replace("s.", "p.")
        where, params = _pod_filters(q, alias="p")
        shared = (q.sums or {}).get(r)
        if shared is not None:
            table, num, den = shared
            # Pods without samples in this (shorter) window have NULL sums: not an entity here.
            source = f"(SELECT pod_id, node_id, {num} AS num, {den} AS den FROM {table} WHERE {den} IS NOT NULL)"
            source_params: list[Any] = []
        else:
            pre: list[str] = []
            source_params = [q.since, q.now]
            for column in ("namespace", "deployment"):  # also on the samples, to read fewer of them
                if getattr(q, column):
                    pre.append(f"s.{column} = %s")
                    source_params.append(getattr(q, column))
            source = f"""(
                SELECT s.pod_id, s.node_id, sum({r.num})::float8 AS num, sum({r.den})::float8 AS den
                FROM metrics_podsample s
                WHERE s.time >= %s AND s.time < %s {"".join(" AND " + w for w in pre)}
                GROUP BY s.pod_id, s.node_id
            )"""
        sql = f"""
            SELECT {select}, {r.scale} * sum(a.num) / NULLIF(sum(a.den * {r.factor}), 0) AS value
            FROM {source} a
            JOIN metrics_pod p ON p.id = a.pod_id
            JOIN metrics_node n ON n.id = a.node_id
            {"WHERE " + " AND ".join(where) if where else ""}
            {"GROUP BY " + group if group else ""}
        """
        return f"SELECT * FROM ({sql}) v WHERE value IS NOT NULL", [*source_params, *params]


def _pod_samples(r: Ratio) -> Builder:
    return _PodSamples(r)


def shared_sums_sql(table: str, terms: list[tuple[Ratio, datetime]]) -> tuple[str, list[Any], list[tuple[str, str]]]:
    """One scan of the pod samples of the longest window into a temporary table of per-pod sums
    for each (ratio, since) the cycle's rules use; shorter windows are FILTERs, and a sum two
    ratios share is computed once. Returns the SQL, its parameters and each term's (num, den)
    columns."""
    earliest = min(since for _, since in terms)
    columns: dict[tuple[str, datetime], str] = {}
    params: list[Any] = []
    names: list[tuple[str, str]] = []
    for r, since in terms:
        pair = []
        for expr in (r.num, r.den):
            if (expr, since) not in columns:
                columns[(expr, since)] = f"c{len(columns)}"
                if since != earliest:
                    params.append(since)
            pair.append(columns[(expr, since)])
        names.append((pair[0], pair[1]))
    # The longest window's sums need no FILTER: the WHERE already keeps exactly its samples.
    select = ", ".join(f"sum({expr})::float8 AS {name}" if since == earliest
                       else f"sum({expr}) FILTER (WHERE s.time >= %s)::float8 AS {name}"
                       for (expr, since), name in columns.items())
    sql = f"""
        CREATE TEMPORARY TABLE {table} ON COMMIT DROP AS
        SELECT s.pod_id, s.node_id, {select}
        FROM metrics_podsample s WHERE s.time >= %s AND s.time < %s
        GROUP BY s.pod_id, s.node_id
    """
    return sql, params + [earliest], names


def _node_samples(r: Ratio) -> Builder:
    def build(q: Query) -> tuple[str, list[Any]]:
        group = "n.name" if q.level == "node" else ""
        node = "n.name" if q.level == "node" else "NULL::text"
        where = " AND n.name = %s" if q.node else ""
        sql = f"""
            SELECT NULL::text, NULL::text, NULL::text, {node}, NULL::text,
                   {r.scale} * sum({r.num}) / NULLIF(sum({r.den}), 0) AS value
            FROM metrics_nodesample s JOIN metrics_node n ON n.id = s.node_id
            WHERE s.time >= %s AND s.time < %s{where}
            {"GROUP BY " + group if group else ""}
        """
        return f"SELECT * FROM ({sql}) v WHERE value IS NOT NULL", [q.since, q.now, *([q.node] if q.node else [])]

    return build


class _ByLevel:
    """Pod samples for pods and their groups; node samples for nodes and the cluster."""

    def __init__(self, pod: _PodSamples, node: Builder) -> None:
        self.pod, self.node = pod, node

    def ratio_for(self, level: str) -> Ratio | None:
        return None if level in ("node", "cluster") else self.pod.ratio

    def __call__(self, q: Query) -> tuple[str, list[Any]]:
        return (self.node if q.level in ("node", "cluster") else self.pod)(q)


def _by_level(pod: Builder, node: Builder) -> Builder:
    assert isinstance(pod, _PodSamples)
    return _ByLevel(pod, node)


def pod_ratio(metric: Metric, level: str) -> Ratio | None:
    """The ratio a metric reads from pod samples at this level, if it does (for shared sums)."""
    ratio_for = getattr(metric.build, "ratio_for", None)
    return ratio_for(level) if ratio_for is not None else None


def _per_pod_counts(per_pod: str, windows: int) -> Builder:
    """Counts per pod (a CTE giving pod_id, v, with `windows` pairs of since/now parameters),
    over current pods, summed per group."""

    def build(q: Query) -> tuple[str, list[Any]]:
        select, group = _POD_GROUPS[q.level]
        select = select.replace("s.", "p.")
        group = group.replace("s.", "p.")
        where, params = _pod_filters(q, alias="p")
        sql = f"""
            WITH per_pod AS ({per_pod})
            SELECT {select}, sum(per_pod.v)::float8 AS value
            FROM per_pod
            JOIN metrics_pod p ON p.id = per_pod.pod_id
            JOIN metrics_node n ON n.id = p.node_id
            WHERE p.last_seen >= %s {"".join(" AND " + w for w in where)}
            {"GROUP BY " + group if group else ""}
        """
        return sql, [*[q.since, q.now] * windows, q.now - LIVE_POD, *params]

    return build


def _current_pods(condition: str, reason: str = "NULL::text", join: str = "") -> Builder:
    """Inventory: current pods for which `condition` holds, 1 each, counted per group."""

    def build(q: Query) -> tuple[str, list[Any]]:
        select, group = _POD_GROUPS[q.level]
        select = select.replace("s.", "p.")
        group = group.replace("s.", "p.")
        if q.level == "pod":
            select = select.replace("NULL::text", reason)
            group = f"{group}, {reason}" if reason != "NULL::text" else group
        where, params = _pod_filters(q, alias="p")
        sql = f"""
            SELECT {select}, count(*)::float8 AS value
            FROM metrics_pod p JOIN metrics_node n ON n.id = p.node_id {join}
            WHERE p.last_seen >= %s AND {condition} {"".join(" AND " + w for w in where)}
            {"GROUP BY " + group if group else ""}
        """
        return sql, [q.now - LIVE_POD, *params]

    return build


class _GpuSamples:
    """Per GPU device (level "gpu"): the window's device samples summed per device, labelled with
    its node, its UUID (label `gpu`) and the pod it was attributed to in its newest sample."""

    def __init__(self, r: Ratio) -> None:
        self.ratio = r

    def __call__(self, q: Query) -> tuple[str, list[Any]]:
        r = self.ratio
        where, params = [], []
        if q.namespace:
            where.append("a.namespace = %s")
            params.append(q.namespace)
        if q.node:
            where.append("n.name = %s")
            params.append(q.node)
        sql = f"""
            WITH per_device AS (
                SELECT s.device_id, s.node_id, sum({r.num})::float8 AS num, sum({r.den})::float8 AS den,
                       (array_agg(s.namespace ORDER BY s.time DESC))[1] AS namespace,
                       (array_agg(s.pod_name ORDER BY s.time DESC))[1] AS pod
                FROM metrics_gpusample s
                WHERE s.time >= %s AND s.time < %s
                GROUP BY s.device_id, s.node_id
            )
            SELECT NULLIF(a.namespace, ''), NULL::text, NULLIF(a.pod, ''), n.name, d.uuid,
                   {r.scale} * a.num / NULLIF(a.den, 0) AS value
            FROM per_device a
            JOIN metrics_gpudevice d ON d.id = a.device_id
            JOIN metrics_node n ON n.id = a.node_id
            {"WHERE " + " AND ".join(where) if where else ""}
        """
        return f"SELECT * FROM ({sql}) v WHERE value IS NOT NULL", [q.since, q.now, *params]


class _GpuOr:
    """GPU devices at level "gpu", the other builder at the other levels."""

    def __init__(self, gpu: _GpuSamples, other: Builder) -> None:
        self.gpu, self.other = gpu, other

    def ratio_for(self, level: str) -> Ratio | None:
        ratio_for = getattr(self.other, "ratio_for", None)
        return None if level == "gpu" or ratio_for is None else ratio_for(level)

    def __call__(self, q: Query) -> tuple[str, list[Any]]:
        return (self.gpu if q.level == "gpu" else self.other)(q)


class _ServingSamples:
    """Model-server metrics from metrics_servingsample (one row per serving pod per interval),
    per pod or per model server: a serving Deployment, or a pod no Deployment owns, grouped like
    /api/model-servers/ (metrics/serving.py). Two stages like the pod samples: the window's
    samples per pod, then the pods joined to the inventory for selectors and grouped.

    `mean`: time-weighted mean of a gauge over the window (and over the replicas, weighted by the
    seconds each covered). `peak`: the highest sample; for an interval percentile it is an upper
    bound of the window's percentile, since percentiles of intervals cannot be merged.
    """

    fifth_label = "model_server"  # the query's fifth column: the server's kind

    def __init__(self, column: str, how: str) -> None:
        assert how in ("mean", "peak")
        self.column, self.how = column, how

    def __call__(self, q: Query) -> tuple[str, list[Any]]:
        c = self.column
        if self.how == "mean":
            per_pod = f"sum(s.{c} * s.interval_seconds) AS num, sum(s.interval_seconds) FILTER (WHERE s.{c} IS NOT NULL) AS den"
            value = "sum(a.num) / NULLIF(sum(a.den), 0)"
        else:
            per_pod = f"max(s.{c}) AS num, NULL::float8 AS den"
            value = "max(a.num)"
        pre = ["s.time >= %s", "s.time < %s"]
        pre_params: list[Any] = [q.since, q.now]
        for column, selected in (("namespace", q.namespace), ("deployment", q.deployment),
                                 ("model_server", q.model_server_kind)):
            if selected:
                pre.append(f"s.{column} = %s")
                pre_params.append(selected)
        where, params = _pod_filters(q, alias="p")
        if q.level == "model_server":
            # The server's name: its Deployment, or the pod's own when no Deployment owns it.
            deployment = "NULLIF(p.deployment, '')"
            pod = f"CASE WHEN {deployment} IS NULL THEN p.name END"
            select = f"p.namespace, {deployment}, {pod}, NULL::text, max(a.model_server)"
            group = f"p.namespace, {deployment}, {pod}"
        else:
            select = "p.namespace, p.deployment, p.name, n.name, max(a.model_server)"
            group = "p.id, p.namespace, p.deployment, p.name, n.name"
        sql = f"""
            SELECT {select}, {value} AS value
            FROM (
                SELECT s.pod_id, s.node_id, max(s.model_server) AS model_server, {per_pod}
                FROM metrics_servingsample s
                WHERE {" AND ".join(pre)}
                GROUP BY s.pod_id, s.node_id
            ) a
            JOIN metrics_pod p ON p.id = a.pod_id
            JOIN metrics_node n ON n.id = a.node_id
            {"WHERE " + " AND ".join(where) if where else ""}
            GROUP BY {group}
        """
        return f"SELECT * FROM ({sql}) v WHERE value IS NOT NULL", [*pre_params, *params]


def _nodes_not_reporting(q: Query) -> tuple[str, list[Any]]:
    # The value is the number of the node's intervals missed since its newest batch ended.
    where = " AND n.name = %s" if q.node else ""
    sql = f"""
        SELECT NULL::text, NULL::text, NULL::text, n.name, NULL::text,
               EXTRACT(EPOCH FROM (%s - n.last_seen))::float8 / COALESCE(NULLIF(n.interval_seconds, 0), 60) AS value
        FROM metrics_node n
        WHERE n.last_seen >= %s{where}
    """
    return sql, [q.now, q.now - FORGOTTEN_NODE, *([q.node] if q.node else [])]


# The cgroup's oom_kill counter and the API's OOMKilled reason can each miss a kill (a counter
# that restarted with its cgroup; a reason overwritten by the next termination): take the larger.
_OOM_PER_POD = """
    SELECT coalesce(a.pod_id, b.pod_id) AS pod_id, GREATEST(coalesce(a.v, 0), coalesce(b.v, 0)) AS v
    FROM (SELECT pod_id, sum(oom_kills) AS v FROM metrics_podsample
          WHERE time >= %s AND time < %s AND oom_kills > 0 GROUP BY pod_id) a
    FULL JOIN (SELECT pod_id, count(*) AS v FROM metrics_container
               WHERE last_termination_reason = 'OOMKilled'
                 AND last_termination_time >= %s AND last_termination_time < %s GROUP BY pod_id) b
    ON a.pod_id = b.pod_id
"""
_RESTARTS_PER_POD = """
    SELECT pod_id, sum(restarts) AS v FROM metrics_containersample
    WHERE time >= %s AND time < %s AND restarts > 0 GROUP BY pod_id
"""

_POD_GROUP_LEVELS = ("pod", "deployment", "namespace", "cluster")
_BAD_PHASES = "p.phase IN ('Pending', 'Failed', 'Unknown')"

METRICS: dict[str, Metric] = {m.key: m for m in [
    Metric("cpu_percent_of_limit", "CPU % of limit", "%", _POD_GROUP_LEVELS,
           _pod_samples(ratio("s.cpu_seconds", "s.cpu_limit_cores * s.interval_seconds"))),
    Metric("cpu_percent_of_request", "CPU % of request", "%", _POD_GROUP_LEVELS,
           _pod_samples(ratio("s.cpu_seconds", "s.cpu_request_cores * s.interval_seconds"))),
    Metric("cpu_percent_of_node", "CPU % of node capacity", "%", ("pod", "node", "cluster"),
           _by_level(_pod_samples(ratio("s.cpu_seconds", "s.interval_seconds", factor="n.cpu_capacity_cores")),
                     _node_samples(ratio("s.cpu_seconds", "s.cpu_capacity_cores * s.interval_seconds")))),
    Metric("memory_percent_of_limit", "Memory % of limit", "%", _POD_GROUP_LEVELS,
           _pod_samples(ratio("s.memory_working_set_bytes::float8 * s.interval_seconds",
                              "s.memory_limit_bytes::float8 * s.interval_seconds"))),
    Metric("memory_percent_of_request", "Memory % of request", "%", _POD_GROUP_LEVELS,
           _pod_samples(ratio("s.memory_working_set_bytes::float8 * s.interval_seconds",
                              "s.memory_request_bytes::float8 * s.interval_seconds"))),
    Metric("memory_percent_of_node", "Memory % of node capacity", "%", ("pod", "node", "cluster"),
           _by_level(_pod_samples(ratio("s.memory_working_set_bytes::float8 * s.interval_seconds",
                                        "s.interval_seconds", factor="n.memory_total_bytes::float8")),
                     _node_samples(ratio("s.memory_working_set_bytes::float8 * s.interval_seconds",
                                         "s.memory_total_bytes::float8 * s.interval_seconds")))),
    # The stored pod and node values are summed over their GPUs (ingest contract); per-device
    # utilisation (level "gpu") arrives with the GPU device data.
    Metric("gpu_utilization_percent", "GPU utilisation %", "%", ("pod", "deployment", "namespace", "node", "gpu"),
           _GpuOr(_GpuSamples(average("s.gpu_utilization_percent")),
                  _by_level(_pod_samples(average("s.gpu_utilization_percent")),
                            _node_samples(average("s.gpu_utilization_percent"))))),
    Metric("gpu_memory_percent", "GPU memory % of the device", "%", ("gpu",),
           _GpuSamples(ratio("s.gpu_memory_bytes::float8 * s.interval_seconds",
                             "s.gpu_memory_total_bytes::float8 * s.interval_seconds"))),
    Metric("cpu_throttled_percent", "CPU throttled % of periods", "%", _POD_GROUP_LEVELS,
           _pod_samples(ratio("s.cpu_throttled_periods", "s.cpu_periods"))),
    Metric("oom_kills", "OOM kills in the window", "kills", _POD_GROUP_LEVELS, _per_pod_counts(_OOM_PER_POD, 2)),
    Metric("restarts", "Container restarts in the window", "restarts", _POD_GROUP_LEVELS,
           _per_pod_counts(_RESTARTS_PER_POD, 1)),
    Metric("psi_cpu_some_percent", "PSI: CPU some % of time", "%", (*_POD_GROUP_LEVELS, "node"),
           _by_level(_pod_samples(ratio("s.psi_cpu_some_seconds", "s.interval_seconds")),
                     _node_samples(ratio("s.psi_cpu_some_seconds", "s.interval_seconds")))),
    Metric("psi_memory_some_percent", "PSI: memory some % of time", "%", (*_POD_GROUP_LEVELS, "node"),
           _by_level(_pod_samples(ratio("s.psi_memory_some_seconds", "s.interval_seconds")),
                     _node_samples(ratio("s.psi_memory_some_seconds", "s.interval_seconds")))),
    Metric("psi_io_some_percent", "PSI: IO some % of time", "%", (*_POD_GROUP_LEVELS, "node"),
           _by_level(_pod_samples(ratio("s.psi_io_some_seconds", "s.interval_seconds")),
                     _node_samples(ratio("s.psi_io_some_seconds", "s.interval_seconds")))),
    Metric("kv_cache_percent", "KV cache % (time-weighted mean over the window and the replicas)", "%",
           ("model_server", "pod"), _ServingSamples("kv_cache_usage_percent", "mean")),
    # Interval p95s cannot be merged into the window's p95: the highest one bounds it from above.
    Metric("ttft_p95_seconds", "Time to first token p95 (upper bound: highest interval p95 in the window)", "s",
           ("model_server", "pod"), _ServingSamples("ttft_p95_seconds", "peak")),
    Metric("pod_phase_not_running", "Pod phase not Running (Pending, Failed, Unknown)", "pods",
           _POD_GROUP_LEVELS, _current_pods(_BAD_PHASES, reason="p.phase")),
    Metric("pod_not_ready", "Pod not ready", "pods", _POD_GROUP_LEVELS,
           _current_pods("p.ready = false AND p.phase IS DISTINCT FROM 'Succeeded'")),
    Metric("containers_waiting", "Containers waiting (CrashLoopBackOff, ImagePullBackOff, ...)", "containers",
           _POD_GROUP_LEVELS,
           _current_pods("c.state = 'waiting' AND c.state_reason IS NOT NULL AND c.state_reason NOT IN "
                         f"({', '.join(repr(r) for r in STARTING_REASONS)})",
                         reason="c.state_reason", join="JOIN metrics_container c ON c.pod_id = p.id")),
    Metric("node_not_reporting", "Node not reporting (intervals missed)", "intervals", ("node",),
           _nodes_not_reporting),
]}


def labels_of(row: tuple[Any, ...], level: str = "pod", metric: Metric | None = None) -> dict[str, str]:
    """Entity labels from a query row (namespace, deployment, pod, node, reason, value); at level
    gpu the fifth column is the device's UUID, label `gpu`; for model-server metrics it is the
    server's kind (vllm / sglang), label `model_server`."""
    fifth = getattr(metric.build, "fifth_label", None) if metric is not None else None
    names = OUTPUT[:4] + (fifth or ("gpu" if level == "gpu" else "reason"),)
    return {name: str(value) for name, value in zip(names, row[:-1]) if value is not None}


def compare(value: float, comparison: str, threshold: float) -> bool:
    return {
        ">": value > threshold, ">=": value >= threshold, "<": value < threshold,
        "<=": value <= threshold, "==": value == threshold, "!=": value != threshold,
    }[comparison]
