"""Right-sizing: what pods use against what they request and are limited to, and what to set.

Usage is read from the pod 1-minute rollup: each pod's average over every minute it reported
(CPU-seconds / covered seconds, working-set byte-seconds / covered seconds), so the percentiles
are over per-replica minutes (a Deployment pools the minutes of all its pods). The memory maximum
is the largest single sample. Throttling is the share of CFS periods throttled where the rollups
carry the period counts, otherwise throttled CPU time against CPU time used (`throttled_basis`
says which). The current setting compared against is the request where the inventory records
requests and the pod has one, else the limit (`basis` says which).

The recommendation (RULE, also in every answer): CPU request = p95 x 1.15 (at least 10 m), no CPU
limit recommended (a CPU limit throttles a pod even when the node is idle); memory request = p95 x
1.15 (at least 32 MiB), memory limit = max x 1.3, at least the request, and after OOM kills in
the window at least 1.5 x the current limit (the observed maximum was cut off by it). What it
frees (negative) or needs (positive) across the cluster is (recommended request - current basis)
x replicas, the pods running now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from metrics import optional, series
from metrics.models import Pod

HEADROOM_REQUEST = 1.15
HEADROOM_MEMORY_LIMIT = 1.3
OOM_LIMIT_FACTOR = 1.5
MIN_CPU_MILLICORES = 10.0
MIN_MEMORY_BYTES = 32 * 1024**2
# Fewer minutes of data than this give no recommendation: a percentile of a few minutes says little.
MIN_MINUTES = 60
DEFAULT_WINDOW = 86400
RULE = (
    "CPU request = p95 x 1.15 (at least 10 m); no CPU limit is recommended. Memory request = p95 x "
    "1.15 (at least 32 MiB); memory limit = max x 1.3, at least the request, and at least 1.5 x the "
    "current limit after OOM kills in the window. Percentiles are over the 1-minute averages of "
    "each replica; the change across the cluster is (recommended request - current request, or "
    "limit where there is no request) x the replicas running now."
)

_STATS = (
    "minutes", "cpu_p50", "cpu_p95", "cpu_max", "mem_p50", "mem_p95", "mem_max",
    "cpu_seconds", "throttled_seconds", "throttled_periods", "periods", "oom_kills",
)


@dataclass(frozen=True)
class Current:
    """The settings compared against, per replica (from the newest pod), and the replicas now."""

    cpu_request: float | None  # cores
    memory_request: float | None  # bytes
    cpu_limit: float | None
    memory_limit: float | None
    replicas: int


def _rollup_columns() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [series.rollup_relation("pod", "1m")],
        )
        return {r[0] for r in cursor.fetchall()}


def _stats_sql(group: tuple[str, ...], where: str) -> tuple[str, bool]:
    has_periods = {"cpu_throttled_periods", "cpu_periods"} <= _rollup_columns()
    cpu = "cpu_seconds / NULLIF(covered_seconds, 0)"
    mem = "memory_working_set_byte_seconds / NULLIF(covered_seconds, 0)"
    periods = (
        "sum(cpu_throttled_periods)::float8, sum(cpu_periods)::float8"
        if has_periods else "NULL::float8, NULL::float8"
    )
    keys = "".join(f"{c}, " for c in group)
    sql = (
        f"SELECT {keys}count(*) FILTER (WHERE cpu_seconds IS NOT NULL OR memory_working_set_byte_seconds IS NOT NULL), "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {cpu}), "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {cpu}), max({cpu}), "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {mem}), "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {mem}), max(memory_working_set_max_bytes)::float8, "
        f"sum(cpu_seconds), sum(cpu_throttled_seconds), {periods}, sum(oom_kills)::float8 "
        f"FROM {series.rollup_relation('pod', '1m')} WHERE {where} AND bucket >= %s AND bucket < %s "
        "AND covered_seconds > 0"
        + (f" GROUP BY {', '.join(group)}" if group else "")
    )
    return sql, has_periods


def _fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    # JIT off (series._fetch): the rollup view's plan counts every raw chunk and passes the JIT
    # threshold. Parallel workers stay allowed: these reads aggregate many rows.
    return series._fetch(sql, params, parallel=True)


def window_bounds(window: int, now: datetime) -> tuple[datetime, datetime]:
    end = series.EPOCH + timedelta(seconds=(now - series.EPOCH).total_seconds() // 60 * 60)
    return end - timedelta(seconds=window), end


def current_settings(pods: Any, now: datetime) -> Current:
    """The newest pod's requests and limits, and how many pods run now."""
    fields = ["cpu_limit_cores", "memory_limit_bytes"]
    if optional.has_requests():
        fields += [optional.CPU_REQUEST, optional.MEMORY_REQUEST]
    newest = pods.order_by("-last_seen", "-id").values(*fields).first() or {}
    replicas = pods.filter(last_seen__gte=now - series.LATEST_LOOKBACK).count()
    return Current(
        cpu_request=newest.get(optional.CPU_REQUEST),
        memory_request=newest.get(optional.MEMORY_REQUEST),
        cpu_limit=newest.get("cpu_limit_cores"),
        memory_limit=newest.get("memory_limit_bytes"),
        replicas=replicas,
    )


def _pct(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a * 100.0 / b


def report(stats: dict[str, Any], current: Current, has_periods: bool) -> dict[str, Any]:
    """The usage against settings and the recommendation of one Deployment or pod."""
    milli = 1000.0
    cpu_p95 = None if stats["cpu_p95"] is None else stats["cpu_p95"] * milli
    cpu_request = None if current.cpu_request is None else current.cpu_request * milli
    cpu_limit = None if current.cpu_limit is None else current.cpu_limit * milli
    cpu_basis = "request" if current.cpu_request else ("limit" if current.cpu_limit else None)
    mem_basis = "request" if current.memory_request else ("limit" if current.memory_limit else None)
    if has_periods:
        throttled = _pct(stats["throttled_periods"], stats["periods"])
        throttled_basis = "periods"
    else:
        throttled = _pct(stats["throttled_seconds"], stats["cpu_seconds"])
        throttled_basis = "cpu_time"
    cpu: dict[str, Any] = {
        "p50_millicores": None if stats["cpu_p50"] is None else stats["cpu_p50"] * milli,
        "p95_millicores": cpu_p95,
        "max_millicores": None if stats["cpu_max"] is None else stats["cpu_max"] * milli,
        "request_millicores": cpu_request,
        "limit_millicores": cpu_limit,
        "basis": cpu_basis,
        "p95_percent_of_request": _pct(cpu_p95, cpu_request),
        "p95_percent_of_limit": _pct(cpu_p95, cpu_limit),
        "max_percent_of_limit": _pct(None if stats["cpu_max"] is None else stats["cpu_max"] * milli, cpu_limit),
        "throttled_percent": throttled,
        "throttled_basis": throttled_basis,
    }
    memory: dict[str, Any] = {
        "p50_bytes": stats["mem_p50"],
        "p95_bytes": stats["mem_p95"],
        "max_bytes": stats["mem_max"],
        "request_bytes": current.memory_request,
        "limit_bytes": current.memory_limit,
        "basis": mem_basis,
        "p95_percent_of_request": _pct(stats["mem_p95"], current.memory_request),
        "p95_percent_of_limit": _pct(stats["mem_p95"], current.memory_limit),
        "max_percent_of_limit": _pct(stats["mem_max"], current.memory_limit),
        "oom_kills": int(stats["oom_kills"] or 0),
    }
    recommendation: dict[str, Any] | None = None
    reason = None
    minutes = int(stats["minutes"] or 0)
    if minutes < MIN_MINUTES:
        reason = f"Only {minutes} minutes of data in the window; at least {MIN_MINUTES} are needed."
    elif cpu_p95 is None or stats["mem_p95"] is None:
        reason = "No CPU or memory data in the window."
    else:
        cpu_rec = max(cpu_p95 * HEADROOM_REQUEST, MIN_CPU_MILLICORES)
        mem_rec = max(stats["mem_p95"] * HEADROOM_REQUEST, MIN_MEMORY_BYTES)
        mem_limit = max((stats["mem_max"] or 0.0) * HEADROOM_MEMORY_LIMIT, mem_rec)
        if memory["oom_kills"] and current.memory_limit:
            mem_limit = max(mem_limit, current.memory_limit * OOM_LIMIT_FACTOR)
        cpu_now = cpu_request if cpu_basis == "request" else cpu_limit
        mem_now = current.memory_request if mem_basis == "request" else current.memory_limit
        recommendation = {
            "cpu_request_millicores": cpu_rec,
            "cpu_limit_millicores": None,
            "memory_request_bytes": mem_rec,
            "memory_limit_bytes": mem_limit,
            "cpu_change_per_replica_millicores": None if cpu_now is None else cpu_rec - cpu_now,
            "memory_change_per_replica_bytes": None if mem_now is None else mem_rec - mem_now,
            "cpu_change_millicores": None if cpu_now is None else (cpu_rec - cpu_now) * current.replicas,
            "memory_change_bytes": None if mem_now is None else (mem_rec - mem_now) * current.replicas,
        }
    return {
        "replicas": current.replicas,
        "minutes": minutes,
        "cpu": cpu,
        "memory": memory,
        "recommendation": recommendation,
        "no_recommendation_reason": reason,
        "rule": RULE,
    }


def _stats_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(_STATS, row))


def for_pods(pods: Any, window: int, now: datetime | None = None) -> dict[str, Any]:
    """One Deployment's or pod's report: `pods` is the queryset of its pods (the inventory)."""
    now = now or timezone.now()
    start, end = window_bounds(window, now)
    ids = list(pods.values_list("id", flat=True))
    sql, has_periods = _stats_sql((), "pod_id = ANY(%s)")
    row = _fetch(sql, [ids, start, end])[0] if ids else (0,) + (None,) * (len(_STATS) - 1)
    result = report(_stats_dict(row), current_settings(pods, now), has_periods)
    result.update(start=start, end=end, window=window, requests_recorded=optional.has_requests())
    return result


def waste_list(window: int, now: datetime | None = None, sort: str = "share", limit: int = 50) -> dict[str, Any]:
    """Every Deployment's report, most wasteful first: by CPU, memory, or (share) the sum of the
    shares of the cluster's CPU and memory capacity its recommendation would free."""
    from metrics.models import Node

    now = now or timezone.now()
    start, end = window_bounds(window, now)
    sql, has_periods = _stats_sql(("namespace", "deployment"), "deployment IS NOT NULL")
    rows = _fetch(sql, [start, end])
    recent = Q(last_seen__gte=now - series.LATEST_LOOKBACK)
    capacity = Node.objects.filter(recent).values_list("cpu_capacity_cores", "memory_total_bytes")
    cpu_capacity = sum(c or 0.0 for c, _ in capacity) * 1000.0
    mem_capacity = float(sum(m or 0 for _, m in capacity))
    settings_of = _deployment_settings({(r[0], r[1]) for r in rows}, now)
    items = []
    for row in rows:
        key = (row[0], row[1])
        item = {"namespace": key[0], "name": key[1]}
        item.update(report(_stats_dict(row[2:]), settings_of.get(key, Current(None, None, None, None, 0)), has_periods))
        rec = item["recommendation"]
        cpu_free = -(rec["cpu_change_millicores"] or 0.0) if rec else 0.0
        mem_free = -(rec["memory_change_bytes"] or 0.0) if rec else 0.0
        item["waste_share"] = (cpu_free / cpu_capacity if cpu_capacity else 0.0) + (
            mem_free / mem_capacity if mem_capacity else 0.0
        )
        item["_cpu_free"], item["_mem_free"] = cpu_free, mem_free
        del item["rule"]
        items.append(item)
    key_of = {"cpu": "_cpu_free", "memory": "_mem_free", "share": "waste_share"}[sort]
    items.sort(key=lambda i: (-i[key_of], i["namespace"], i["name"]))
    total_cpu = sum(i["_cpu_free"] for i in items)
    total_mem = sum(i["_mem_free"] for i in items)
    for item in items:
        del item["_cpu_free"], item["_mem_free"]
    return {
        "start": start, "end": end, "window": window, "sort": sort,
        "requests_recorded": optional.has_requests(), "rule": RULE,
        "deployments": len(items),
        "cpu_freed_millicores": total_cpu, "memory_freed_bytes": total_mem,
        "results": items[:limit],
    }


def _deployment_settings(keys: set[tuple[str, str]], now: datetime) -> dict[tuple[str, str], Current]:
    """Current settings of many Deployments with two inventory queries."""
    if not keys:
        return {}
    fields = ["namespace", "deployment", "cpu_limit_cores", "memory_limit_bytes"]
    if optional.has_requests():
        fields += [optional.CPU_REQUEST, optional.MEMORY_REQUEST]
    pods = Pod.objects.filter(namespace__in={k[0] for k in keys}, deployment__in={k[1] for k in keys})
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in pods.order_by("namespace", "deployment", "-last_seen", "-id").distinct("namespace", "deployment").values(*fields):
        newest[(row["namespace"], row["deployment"])] = row
    replicas: dict[tuple[str, str], int] = {}
    for namespace, deployment in pods.filter(last_seen__gte=now - series.LATEST_LOOKBACK).values_list("namespace", "deployment"):
        key = (namespace, deployment or "")
        replicas[key] = replicas.get(key, 0) + 1
    result = {}
    for key in keys:
        row = newest.get(key)
        if row is None:
            continue
        result[key] = Current(
            cpu_request=row.get(optional.CPU_REQUEST), memory_request=row.get(optional.MEMORY_REQUEST),
            cpu_limit=row.get("cpu_limit_cores"), memory_limit=row.get("memory_limit_bytes"),
            replicas=replicas.get(key, 0),
        )
    return result
