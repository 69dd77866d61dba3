"""`/api/statistics/?hours=N`: the last N hours, hour by hour, from the 1-hour rollups.

The window is the N hours ending with the current one, so the newest point is still filling and
says so with its `coverage` (metrics.series). Per hour: the average (exact, from the 1-hour rollups)
and the peak minute (the highest 1-minute average within the hour, from the 1-minute rollups, null
beyond their retention) of the cluster's CPU and memory, and of its GPU fields when the catalogue
has them; the hourly average of each namespace and of each model-server kind (when the inventory
records one); and the top consumers over the whole window, pods and Deployments, from the pod
1-hour rollup.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from metrics import optional, series
from metrics.models import Cluster, Pod

MAX_HOURS = 8760
TOP = 10
HOUR = 3600

# Point fields reported per hour: CPU and memory, and the catalogue's GPU fields when present.
_BASE_FIELDS = ("cpu_millicores", "memory_working_set_bytes")


def hourly_fields() -> tuple[str, ...]:
    return _BASE_FIELDS + tuple(f.name for f in series.POINTS if f.name.startswith("gpu_"))


def _hour_floor(moment: datetime) -> datetime:
    seconds = (moment - series.EPOCH).total_seconds()
    return series.EPOCH + timedelta(seconds=seconds - seconds % HOUR)


def window_for(hours: int, now: datetime) -> series.Window:
    # The current hour is always the last point.
    end = _hour_floor(now) + timedelta(seconds=HOUR)
    return series.Window(start=end - timedelta(hours=hours), end=end, step=HOUR, source="1h")


def statistics(hours: int, now: datetime | None = None, cluster: Cluster | None = None) -> dict[str, Any]:
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(hours)
    now = now or timezone.now()
    window = window_for(hours, now)
    node_ids = list(cluster.nodes.values_list("id", flat=True)) if cluster is not None else None
    entity = series.CLUSTER if cluster is None else series.Entity("cluster", (cluster.pk,))
    fields = hourly_fields()
    cluster_points = series.series(entity, window, now=now)
    peaks = _peaks(window, now, cluster)
    hourly = []
    for point in cluster_points:
        row: dict[str, Any] = {"time": point["time"], "coverage": point["coverage"]}
        peak = peaks.get(point["time"], {})
        for name in fields:
            row[name] = point.get(name)
            if name in peak:
                row[f"{name}_peak"] = peak[name]
            else:
                row[f"{name}_peak"] = None
        hourly.append(row)
    # Seconds the cluster reported per hour: what a group's use is averaged over.
    reported = {
        p["time"]: HOUR * p["coverage"] if p["coverage"] else _elapsed(p["time"], now)
        for p in cluster_points
    }
    result: dict[str, Any] = {
        "cluster": cluster.name if cluster is not None else None,
        "hours": hours,
        "start": window.start,
        "end": window.end,
        "step": HOUR,
        "peak_source": "1m",
        "cluster_hourly": hourly,
        "totals": _totals(hourly, fields),
        "namespaces": (
            _namespaces(window, now, cluster) if node_ids is None
            else _namespaces_on(window, node_ids, reported)
        ),
    }
    kinds = _model_servers(window, node_ids, reported)
    if kinds is not None:
        result["model_servers"] = kinds
    result["top"] = _top(window, now, node_ids)
    return result


def _elapsed(bucket: datetime, now: datetime) -> float:
    return max(1.0, min(float(HOUR), (now - bucket).total_seconds()))


def _totals(hourly: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, Any]:
    """Over the window: the average (weighted by each hour's coverage) and the peak minute."""
    totals: dict[str, Any] = {}
    for name in fields:
        weighted = [(h[name], h["coverage"] or 0.0) for h in hourly if h[name] is not None]
        weight = sum(c for _, c in weighted)
        totals[name] = sum(v * c for v, c in weighted) / weight if weight else None
        peaks = [h[f"{name}_peak"] for h in hourly if h[f"{name}_peak"] is not None]
        totals[f"{name}_peak"] = max(peaks) if peaks else None
    return totals


def _peaks(window: series.Window, now: datetime, cluster: Cluster | None) -> dict[datetime, dict[str, float | None]]:
    """Per hour, the highest 1-minute average of the cluster's CPU and memory, each minute divided
    by its reporting nodes' mean covered seconds (as series.py's group points)."""
    start = max(window.start, _hour_floor(now - timedelta(days=settings.RETENTION_1M_DAYS)) + timedelta(seconds=HOUR))
    if start >= window.end:
        return {}
    where = "bucket >= %s AND bucket < %s"
    params: list[Any] = [start, window.end]
    if cluster is not None:
        where += " AND node_id IN (SELECT id FROM metrics_node WHERE cluster_id = %s)"
        params.append(cluster.pk)
    sql = (
        "SELECT date_bin(interval '1 hour', bucket, %s) AS h, max(cpu), max(mem) FROM ("
        "SELECT bucket, sum(cpu_seconds) / nullif(sum(covered_seconds) / count(*), 0) AS cpu, "
        "sum(memory_working_set_byte_seconds) / nullif(sum(covered_seconds) / count(*), 0) AS mem "
        f"FROM {series.rollup_relation('node', '1m')} WHERE {where} GROUP BY bucket) m GROUP BY 1"
    )
    # series._fetch: JIT off and no parallel workers (see summary.pod_minute).
    rows = series._fetch(sql, [series.EPOCH, *params], parallel=False)
    return {
        h: {
            "cpu_millicores": None if cpu is None else float(cpu) * 1000.0,
            "memory_working_set_bytes": mem,
        }
        for h, cpu, mem in rows
    }


def _compact(points: list[dict[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"time": p["time"], "coverage": p["coverage"], **{f: p.get(f) for f in fields}} for p in points]


def _namespaces(window: series.Window, now: datetime, cluster: Cluster | None) -> list[dict[str, Any]]:
    """Each namespace that had pods in the window: its hourly averages, its average over the
    window and its peak hour. Namespaces span clusters (they are keyed by name)."""
    pods = Pod.objects.filter(first_seen__lt=window.end, last_seen__gte=window.start - timedelta(minutes=2))
    if cluster is not None:
        pods = pods.filter(node__cluster=cluster)
    names = sorted(set(pods.values_list("namespace", flat=True)))
    if not names:
        return []
    fields = hourly_fields()
    all_points = series.series_many([series.Entity("namespace", (n,)) for n in names], window, now=now)
    out = []
    for name, points in zip(names, all_points):
        hourly = _compact(points, fields)
        item: dict[str, Any] = {"name": name}
        for f in fields:
            weighted = [(p[f], p["coverage"] if p["coverage"] is not None else 1.0) for p in hourly if p[f] is not None]
            weight = sum(c for _, c in weighted)
            item[f] = sum(v * c for v, c in weighted) / weight if weight else None
            item[f"{f}_peak_hour"] = max((v for v, _ in weighted), default=None)
        item["hourly"] = hourly
        out.append(item)
    return out


def _namespaces_on(
    window: series.Window, node_ids: list[int], reported: dict[datetime, float]
) -> list[dict[str, Any]]:
    """Namespaces as _namespaces gives them, counting only pods on `node_ids` (one cluster's):
    from the pod 1-hour rollup, each hour's sum over the seconds the cluster reported in it."""
    sql = (
        "SELECT namespace, bucket, sum(cpu_seconds), sum(memory_working_set_byte_seconds) "
        f"FROM {series.rollup_relation('pod', '1h')} WHERE node_id = ANY(%s) AND bucket >= %s "
        "AND bucket < %s GROUP BY namespace, bucket"
    )
    rows = series._fetch(sql, [node_ids, window.start, window.end], parallel=False)
    sums: dict[str, dict[datetime, tuple[Any, Any]]] = {}
    for namespace, bucket, cpu, mem in rows:
        sums.setdefault(namespace, {})[bucket] = (cpu, mem)
    fields = hourly_fields()
    out = []
    for name in sorted(sums):
        hourly = []
        for bucket, seconds in reported.items():
            cpu, mem = sums[name].get(bucket, (None, None))
            point: dict[str, Any] = dict.fromkeys(fields)
            point.update(
                time=bucket, coverage=min(1.0, seconds / HOUR) if bucket in sums[name] else None,
                cpu_millicores=None if cpu is None else cpu / seconds * 1000.0,
                memory_working_set_bytes=None if mem is None else mem / seconds,
            )
            hourly.append(point)
        item: dict[str, Any] = {"name": name}
        for f in fields:
            values = [(p[f], p["coverage"] or 0.0) for p in hourly if p[f] is not None]
            weight = sum(c for _, c in values)
            item[f] = sum(v * c for v, c in values) / weight if weight else None
            item[f"{f}_peak_hour"] = max((v for v, _ in values), default=None)
        item["hourly"] = hourly
        out.append(item)
    return out


def _model_servers(
    window: series.Window, node_ids: list[int] | None, reported: dict[datetime, float]
) -> list[dict[str, Any]] | None:
    """Hourly CPU and memory of the pods of each model-server kind (vllm, sglang, ...), when the
    inventory records the kind; each hour's sum over the seconds the cluster reported in it."""
    if not optional.pod_has("model_server"):
        return None
    pods = Pod.objects.filter(first_seen__lt=window.end, last_seen__gte=window.start - timedelta(minutes=2))
    pods = pods.exclude(**{"model_server__isnull": True}).exclude(**{"model_server": ""})
    if node_ids is not None:
        pods = pods.filter(node_id__in=node_ids)
    kinds: dict[str, list[int]] = {}
    for pod_id, kind in pods.values_list("id", "model_server"):  # type: ignore[misc]
        kinds.setdefault(str(kind), []).append(pod_id)  # nulls are excluded above
    out = []
    for kind in sorted(kinds):
        sql = (
            "SELECT bucket, sum(cpu_seconds), sum(memory_working_set_byte_seconds) "
            f"FROM {series.rollup_relation('pod', '1h')} WHERE pod_id = ANY(%s) AND bucket >= %s "
            "AND bucket < %s GROUP BY bucket"
        )
        rows = {r[0]: r[1:] for r in series._fetch(sql, [kinds[kind], window.start, window.end], parallel=False)}
        hourly = []
        for bucket, seconds in reported.items():
            cpu, mem = rows.get(bucket, (None, None))
            hourly.append({
                "time": bucket,
                "cpu_millicores": None if cpu is None else cpu / seconds * 1000.0,
                "memory_working_set_bytes": None if mem is None else mem / seconds,
            })
        out.append({"kind": kind, "pods": len(kinds[kind]), "hourly": hourly})
    return out


def _top(window: series.Window, now: datetime, node_ids: list[int] | None) -> dict[str, list[dict[str, Any]]]:
    """The TOP pods and Deployments by CPU and by memory over the window. Values are averages over
    the window's elapsed seconds (a pod that ran for half of it counts half; a Deployment is the
    sum of its pods), so they add up like the cluster's use."""
    elapsed = max(1.0, (min(window.end, now) - window.start).total_seconds())
    where = "bucket >= %s AND bucket < %s"
    params: list[Any] = [window.start, window.end]
    if node_ids is not None:
        where += " AND node_id = ANY(%s)"
        params.append(node_ids)
    sql = f"""
WITH p AS (
    SELECT pod_id, namespace, deployment, sum(cpu_seconds) AS cpu,
           sum(memory_working_set_byte_seconds) AS mem, sum(covered_seconds) AS cov,
           max(memory_working_set_max_bytes)::float8 AS mx
    FROM {series.rollup_relation('pod', '1h')} WHERE {where} GROUP BY pod_id, namespace, deployment
), d AS (
    SELECT namespace, deployment, sum(cpu) AS cpu, sum(mem) AS mem, max(mx) AS mx, count(*) AS pods
    FROM p WHERE deployment IS NOT NULL GROUP BY namespace, deployment
)
(SELECT 'pods_by_cpu', pod_id, namespace, deployment, cpu, mem, mx, cov FROM p
 ORDER BY cpu DESC NULLS LAST, pod_id LIMIT {TOP})
UNION ALL
(SELECT 'pods_by_memory', pod_id, namespace, deployment, cpu, mem, mx, cov FROM p
 ORDER BY mem DESC NULLS LAST, pod_id LIMIT {TOP})
UNION ALL
(SELECT 'deployments_by_cpu', pods, namespace, deployment, cpu, mem, mx, NULL FROM d
 ORDER BY cpu DESC NULLS LAST, namespace, deployment LIMIT {TOP})
UNION ALL
(SELECT 'deployments_by_memory', pods, namespace, deployment, cpu, mem, mx, NULL FROM d
 ORDER BY mem DESC NULLS LAST, namespace, deployment LIMIT {TOP})
"""
    rows = series._fetch(sql, params, parallel=False)
    pod_ids = {r[1] for r in rows if r[0].startswith("pods_")}
    names = {
        pk: (name, node)
        for pk, name, node in Pod.objects.filter(id__in=pod_ids).values_list("id", "name", "node__name")
    }
    top: dict[str, list[dict[str, Any]]] = {
        "pods_by_cpu": [], "pods_by_memory": [], "deployments_by_cpu": [], "deployments_by_memory": []
    }
    for group, key, namespace, deployment, cpu, mem, mx, cov in rows:
        item: dict[str, Any] = {
            "namespace": namespace,
            "cpu_millicores": None if cpu is None else cpu / elapsed * 1000.0,
            "cpu_core_hours": None if cpu is None else cpu / HOUR,
            "memory_working_set_bytes": None if mem is None else mem / elapsed,
            "memory_working_set_max_bytes": mx,
        }
        if group.startswith("pods_"):
            name, node = names.get(key, (None, None))
            item.update(name=name, deployment=deployment, node=node, hours_reported=(cov or 0.0) / HOUR)
        else:
            item.update(name=deployment, pods=key)
        top[group].append(item)
    return top
