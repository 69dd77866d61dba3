"""`/api/summary/`: each cluster at a glance, from the inventory and the rollups only.

Nodes are "reporting" until their collector has missed 3 intervals: now - (end of the newest
interval) > 3 x that interval (the interval of the node's newest sample, one index probe per node
on the (node, time) key). Pods are those seen within series.LATEST_LOOKBACK (as /api/cluster/).
Usage is the cluster's newest complete minute (series.latest_cluster) and, for the same minute,
the sum over its pods from the pod 1-minute rollup, against their limits and, where the inventory
has them, their requests. Nothing here counts rows of a sample table.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from metrics import optional, series
from metrics.models import Cluster, Node, Pod

# A node is not reporting once its collector missed this many intervals.
MISSED_INTERVALS = 3
NOT_REPORTING_NAMES = 20
MODEL_SERVER_KINDS = ("vllm", "sglang")


def summary(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    clusters = list(Cluster.objects.order_by("name"))
    several = len(clusters) > 1
    blocks = [cluster_summary(c, several, now) for c in clusters] or [cluster_summary(None, False, now)]
    newest = [b["newest_sample"] for b in blocks if b["newest_sample"] is not None]
    result: dict[str, Any] = {
        "time": now,
        "newest_sample": max(newest) if newest else None,
        "clusters": blocks,
    }
    alerts = active_alerts()
    if alerts is not None:
        result["alerts"] = alerts
    return result


def cluster_summary(cluster: Cluster | None, several: bool, now: datetime) -> dict[str, Any]:
    nodes_qs = Node.objects.all()
    pods_qs = Pod.objects.filter(last_seen__gte=now - series.LATEST_LOOKBACK)
    entity = series.CLUSTER
    if cluster is not None and several:
        nodes_qs = nodes_qs.filter(cluster=cluster)
        pods_qs = pods_qs.filter(node__cluster=cluster)
        entity = series.Entity("cluster", (cluster.pk,))
    fields = ["id", "name", "last_seen"]
    if optional.has_field(Node, "interval_seconds"):
        fields.append("interval_seconds")
    nodes: list[dict[str, Any]] = [dict(n) for n in nodes_qs.values(*fields)]
    status = node_status(nodes, now)
    not_reporting = sorted(n["name"] for n in nodes if not status[n["id"]]["reporting"])
    block: dict[str, Any] = {
        "name": cluster.name if cluster is not None else settings.CLUSTER_NAME,
        "newest_sample": max((n["last_seen"] for n in nodes), default=None),
        "nodes": {
            "total": len(nodes),
            "reporting": len(nodes) - len(not_reporting),
            "not_reporting": len(not_reporting),
            "not_reporting_names": not_reporting[:NOT_REPORTING_NAMES],
        },
        "pods": pod_counts(pods_qs),
    }
    servers = model_server_counts(pods_qs)
    if servers is not None:
        block["model_servers"] = servers
    usage = series.latest_cluster(now, entity) if nodes else None
    block["usage"] = usage_block(usage, pods_qs, [n["id"] for n in nodes] if several else None)
    gpu = gpu_block(nodes, status)
    if gpu is not None:
        block["usage"]["gpu"] = gpu
    return block


# --- nodes ----------------------------------------------------------------------------------------


def node_status(nodes: list[dict[str, Any]], now: datetime) -> dict[int, dict[str, Any]]:
    """Per node id: reporting (bool), the interval of its newest sample, and that sample's GPU
    values; a node with no sample within 3 x the longest interval is not reporting."""
    ids = [n["id"] for n in nodes]
    rows: dict[int, tuple[Any, ...]] = {}
    if ids:
        since = now - MISSED_INTERVALS * series.MAX_INTERVAL
        # One probe per node on its (node_id, time) key, newest first; no scan.
        sql = (
            "SELECT k.id, s.time, s.interval_seconds, s.gpu_utilization_percent, s.gpu_memory_bytes "
            "FROM unnest(%s::bigint[]) AS k(id) CROSS JOIN LATERAL (SELECT * FROM metrics_nodesample "
            "WHERE node_id = k.id AND time >= %s ORDER BY time DESC LIMIT 1) s"
        )
        rows = {r[0]: r[1:] for r in series._fetch(sql, [ids, since], parallel=False)}
    result: dict[int, dict[str, Any]] = {}
    for node in nodes:
        row = rows.get(node["id"])
        if row is None:
            result[node["id"]] = {"reporting": False, "interval_seconds": None, "gpu": None}
            continue
        start, interval, gpu_util, gpu_mem = row
        # Where the inventory keeps the newest batch's interval (as alerting's rule reads it),
        # that one, so both say the same; else the newest sample's.
        interval = node.get("interval_seconds") or interval
        end = max(node["last_seen"], start + timedelta(seconds=row[1]))
        result[node["id"]] = {
            "reporting": (now - end).total_seconds() <= MISSED_INTERVALS * interval,
            "interval_seconds": interval,
            "gpu": (gpu_util, gpu_mem),
        }
    return result


def gpu_block(nodes: list[dict[str, Any]], status: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """GPU use of the reporting nodes' newest samples; None when no node reports a GPU."""
    util = memory = 0.0
    with_gpu = 0
    for node in nodes:
        state = status[node["id"]]
        if not state["reporting"] or state["gpu"] is None:
            continue
        u, m = state["gpu"]
        if u is None and m is None:
            continue
        with_gpu += 1
        util += u or 0.0
        memory += m or 0
    if not with_gpu:
        return None
    block: dict[str, Any] = {
        "nodes_with_gpu": with_gpu,
        # One value per GPU summed, as collected: 250 means two and a half GPUs' worth busy.
        "utilization_percent_sum": util,
        "memory_used_bytes": int(memory),
    }
    if optional.has_field(Node, "gpu_count"):
        gpus = Node.objects.filter(id__in=[n["id"] for n in nodes]).aggregate(n=Sum("gpu_count"))["n"]
        block["gpus"] = gpus
        block["utilization_percent_of_capacity"] = util / gpus if gpus else None
    return block


# --- pods -----------------------------------------------------------------------------------------


def pod_counts(pods_qs: Any) -> dict[str, Any]:
    counts: dict[str, Any] = {"total": pods_qs.count()}
    if optional.pod_has("phase"):
        counts["phases"] = {
            row["phase"] or "Unknown": row["n"]
            for row in pods_qs.order_by().values("phase").annotate(n=Count("id"))
        }
    if optional.pod_has("ready"):
        # Aliases other than the field's name: an aggregate may not shadow a field it filters on.
        ready = pods_qs.aggregate(
            n_ready=Count("id", filter=Q(ready=True)), n_not_ready=Count("id", filter=Q(ready=False))
        )
        counts["ready"], counts["not_ready"] = ready["n_ready"], ready["n_not_ready"]
    return counts


def model_server_counts(pods_qs: Any) -> dict[str, int] | None:
    if not optional.pod_has("model_server"):
        return None
    found = Counter(
        {
            row["model_server"]: row["n"]
            for row in pods_qs.exclude(model_server__isnull=True).exclude(model_server="")
            .order_by().values("model_server").annotate(n=Count("id"))
        }
    )
    return {kind: found.get(kind, 0) for kind in (*MODEL_SERVER_KINDS, *sorted(set(found) - set(MODEL_SERVER_KINDS)))}


# --- usage ----------------------------------------------------------------------------------------

_POD_SUMS = (
    "cpu_seconds", "memory_working_set_byte_seconds", "cpu_limited_seconds", "cpu_limit_core_seconds",
    "memory_limited_byte_seconds", "memory_limit_byte_seconds",
)


def _pct(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a * 100.0 / b


def pod_minute(bucket: datetime, node_ids: list[int] | None) -> dict[int, dict[str, float | None]]:
    """Each pod's sums in one complete 1-minute bucket, keyed by pod id."""
    where = "bucket = %s"
    params: list[Any] = [bucket]
    if node_ids is not None:
        where += " AND node_id = ANY(%s)"
        params.append(node_ids)
    sql = f"SELECT pod_id, {', '.join(_POD_SUMS)} FROM {series.rollup_relation('pod', '1m')} WHERE {where}"
    # series._fetch: JIT off and no parallel workers. The rollup view's plan counts every raw
    # chunk, so JIT compiled this 5 ms read for 200 ms on the bench data.
    return {r[0]: dict(zip(_POD_SUMS, r[1:])) for r in series._fetch(sql, params, parallel=False)}


def usage_block(point: dict[str, Any] | None, pods_qs: Any, node_ids: list[int] | None) -> dict[str, Any]:
    """CPU and memory of the newest complete minute: the nodes' use against their capacity, and
    the pods' use against their limits and requests."""
    requests = optional.has_requests()
    inventory = pods_qs.aggregate(
        cpu_limits=Sum("cpu_limit_cores"), memory_limits=Sum("memory_limit_bytes"),
        **(
            {"cpu_requests": Sum(optional.CPU_REQUEST), "memory_requests": Sum(optional.MEMORY_REQUEST)}
            if requests else {}
        ),
    )
    cpu: dict[str, Any] = dict.fromkeys(
        ("used_millicores", "capacity_millicores", "percent_of_capacity", "pods_used_millicores",
         "limits_millicores", "pods_percent_of_limits")
    )
    memory: dict[str, Any] = dict.fromkeys(
        ("used_bytes", "capacity_bytes", "percent_of_capacity", "pods_used_bytes", "limits_bytes",
         "pods_percent_of_limits")
    )
    cpu["limits_millicores"] = None if inventory["cpu_limits"] is None else inventory["cpu_limits"] * 1000.0
    memory["limits_bytes"] = inventory["memory_limits"]
    if requests:
        cpu["requests_millicores"] = None if inventory["cpu_requests"] is None else inventory["cpu_requests"] * 1000.0
        memory["requests_bytes"] = inventory["memory_requests"]
        cpu["pods_percent_of_requests"] = memory["pods_percent_of_requests"] = None
    block: dict[str, Any] = {"time": None, "coverage": None, "cpu": cpu, "memory": memory}
    if point is None:
        return block
    block["time"], block["coverage"] = point["time"], point["coverage"]
    cpu["used_millicores"] = point["cpu_millicores"]
    cpu["capacity_millicores"] = point["cpu_capacity_millicores"]
    cpu["percent_of_capacity"] = point["cpu_percent_of_capacity"]
    memory["used_bytes"] = point["memory_working_set_bytes"]
    memory["capacity_bytes"] = point["memory_capacity_bytes"]
    memory["percent_of_capacity"] = point["memory_percent_of_capacity"]
    if cpu["limits_millicores"] is not None:
        cpu["limits_percent_of_capacity"] = _pct(cpu["limits_millicores"], cpu["capacity_millicores"])
    if requests:
        cpu["requests_percent_of_capacity"] = _pct(cpu.get("requests_millicores"), cpu["capacity_millicores"])
        memory["requests_percent_of_capacity"] = _pct(memory.get("requests_bytes"), memory["capacity_bytes"])
    pods = pod_minute(point["time"], node_ids)
    if not pods:
        return block
    total = {k: sum(p[k] or 0.0 for p in pods.values()) for k in _POD_SUMS}
    # A complete minute: every pod's usage over the minute's 60 seconds, summed (as a group point).
    cpu["pods_used_millicores"] = total["cpu_seconds"] / 60.0 * 1000.0
    memory["pods_used_bytes"] = total["memory_working_set_byte_seconds"] / 60.0
    cpu["pods_percent_of_limits"] = _pct(total["cpu_limited_seconds"], total["cpu_limit_core_seconds"])
    memory["pods_percent_of_limits"] = _pct(total["memory_limited_byte_seconds"], total["memory_limit_byte_seconds"])
    if requests:
        _percent_of_requests(pods, cpu, memory)
    return block


def _percent_of_requests(pods: dict[int, dict[str, float | None]], cpu: dict[str, Any], memory: dict[str, Any]) -> None:
    """Use of the pods that have a request against those requests, in the same minute."""
    rows = Pod.objects.filter(id__in=list(pods)).values_list("id", optional.CPU_REQUEST, optional.MEMORY_REQUEST)
    cpu_used = cpu_req = mem_used = mem_req = 0.0
    for pod_id, cpu_request, memory_request in rows:
        sums = pods[pod_id]
        if cpu_request and sums["cpu_seconds"] is not None:
            cpu_used += sums["cpu_seconds"] / 60.0
            cpu_req += cpu_request
        if memory_request and sums["memory_working_set_byte_seconds"] is not None:
            mem_used += sums["memory_working_set_byte_seconds"] / 60.0
            mem_req += memory_request
    cpu["pods_percent_of_requests"] = _pct(cpu_used, cpu_req)
    memory["pods_percent_of_requests"] = _pct(mem_used, mem_req)


# --- alerts ---------------------------------------------------------------------------------------


def active_alerts() -> dict[str, int] | None:
    """Firing alerts by severity, when alerting is installed; None otherwise."""
    model = optional.alert_model()
    if model is None:
        return None
    qs = model._default_manager.all()
    if optional.has_field(model, "state"):
        qs = qs.filter(state="firing")
    elif optional.has_field(model, "ended"):
        qs = qs.filter(ended__isnull=True)
    if optional.has_field(model, "severity"):
        path = "severity"
    elif optional.has_field(model, "rule"):
        path = "rule__severity"
    else:
        return {"total": qs.count()}
    counts = {row[path]: row["n"] for row in qs.order_by().values(path).annotate(n=Count("pk"))}
    result = {severity: counts.pop(severity, 0) for severity in ("critical", "warning", "info")}
    result.update(counts)
    result["total"] = sum(v for k, v in result.items() if k != "total")
    return result

