"""Model servers (vLLM / SGLang pods) as the read API shows them: newest figures and series.

A model server is a Deployment whose pods serve a model, or a pod no Deployment owns. Its newest
figures come from metrics_servingsample, the raw samples.

Its series are the catalogue's (metrics/catalogue.py, entities `serving` and
`serving_deployment`): each sample carries what happened during its interval and is spread over
the buckets it overlaps, and steps that are multiples of 60 s / 3600 s read the 1m / 1h rollups,
so token and request counts, their rates and latency means (sum of sums over sum of counts) are
exact at any step, with `coverage`. p95 cannot be merged from percentiles: a point gives the
highest replica interval p95 in the bucket, an upper bound. Gauges (requests running/waiting, KV
cache use) are time-weighted: requests summed over replicas, KV cache % averaged over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from metrics import series
from metrics.models import Pod
from metrics.series import LATEST_LOOKBACK, Window

LATENCIES = ("ttft", "itl", "e2e")


@dataclass(frozen=True)
class Server:
    namespace: str
    name: str
    kind: str  # "deployment" or "pod"


def _where(server: Server) -> tuple[str, list[Any]]:
    """Filter on metrics_servingsample for a server's samples (alias s)."""
    if server.kind == "deployment":
        return "s.namespace = %s AND s.deployment = %s", [server.namespace, server.name]
    return (
        "s.pod_id IN (SELECT id FROM metrics_pod WHERE namespace = %s AND name = %s) "
        "AND (s.deployment IS NULL OR s.deployment = '')",
        [server.namespace, server.name],
    )


_LATEST_COLUMNS = (
    "time", "interval_seconds", "requests_running", "requests_waiting", "kv_cache_usage_percent",
    "prompt_tokens", "generation_tokens", "requests_succeeded", "preemptions",
    "ttft_seconds_sum", "ttft_count", "ttft_p95_seconds", "itl_seconds_sum", "itl_count",
    "e2e_seconds_sum", "e2e_count",
)


def latest_by_pod(pod_ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Each pod's newest serving sample (within LATEST_LOOKBACK) and newest GPU figures."""
    if not pod_ids:
        return {}
    since = (now or timezone.now()) - LATEST_LOOKBACK
    cols = ", ".join(f"s.{c}" for c in _LATEST_COLUMNS)
    # One index probe per pod on the (pod, time) unique indexes, newest chunk first.
    sql = (
        f"SELECT k.id, {cols}, g.gpu_utilization_percent, g.gpu_memory_bytes "
        "FROM unnest(%s::bigint[]) AS k(id) "
        "CROSS JOIN LATERAL (SELECT * FROM metrics_servingsample WHERE pod_id = k.id AND time >= %s "
        "ORDER BY time DESC LIMIT 1) s "
        "LEFT JOIN LATERAL (SELECT gpu_utilization_percent, gpu_memory_bytes FROM metrics_podsample "
        "WHERE pod_id = k.id AND time >= %s ORDER BY time DESC LIMIT 1) g ON true"
    )
    names = (*_LATEST_COLUMNS, "gpu_utilization_percent", "gpu_memory_bytes")
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(pod_ids), since, since])
        return {row[0]: dict(zip(names, row[1:])) for row in cursor.fetchall()}


def _add(a: float | None, b: float | None) -> float | None:
    if b is None:
        return a
    return b if a is None else a + b


def _rate(value: float | None, seconds: float) -> float | None:
    return None if value is None or not seconds else value / seconds


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's newest figures from its replicas' newest samples: rates and gauges summed,
    KV cache % averaged, latency means exact over the replicas' last intervals, TTFT p95 the
    highest replica's."""
    out: dict[str, Any] = dict.fromkeys((
        "time", "replicas_reporting", "prompt_tokens_per_second", "generation_tokens_per_second",
        "requests_per_second", "requests_running", "requests_waiting", "kv_cache_usage_percent",
        "ttft_mean_seconds", "ttft_p95_seconds", "itl_mean_seconds", "e2e_mean_seconds",
        "gpu_utilization_percent", "gpu_memory_bytes",
    ))
    out["replicas_reporting"] = len(samples)
    if not samples:
        return out
    out["time"] = max(s["time"] for s in samples)
    kv: list[float] = []
    sums: dict[str, float | None] = {}
    for s in samples:
        seconds = s["interval_seconds"]
        for key, column in (("prompt_tokens_per_second", "prompt_tokens"),
                            ("generation_tokens_per_second", "generation_tokens"),
                            ("requests_per_second", "requests_succeeded")):
            out[key] = _add(out[key], _rate(s[column], seconds))
        for key in ("requests_running", "requests_waiting", "gpu_utilization_percent", "gpu_memory_bytes"):
            out[key] = _add(out[key], s[key])
        if s["kv_cache_usage_percent"] is not None:
            kv.append(s["kv_cache_usage_percent"])
        for name in LATENCIES:
            sums[f"{name}_sum"] = _add(sums.get(f"{name}_sum"), s[f"{name}_seconds_sum"])
            sums[f"{name}_count"] = _add(sums.get(f"{name}_count"), s[f"{name}_count"])
        if s["ttft_p95_seconds"] is not None:
            out["ttft_p95_seconds"] = max(out["ttft_p95_seconds"] or 0.0, s["ttft_p95_seconds"])
    out["kv_cache_usage_percent"] = sum(kv) / len(kv) if kv else None
    for name in LATENCIES:
        total, count = sums.get(f"{name}_sum"), sums.get(f"{name}_count")
        out[f"{name}_mean_seconds"] = total / count if total is not None and count else None
    return out


def entity_of(server: Server) -> series.Entity | None:
    """The catalogue entity whose series is the server's: a Deployment's sum over its server pods,
    or a standalone pod (the newest of that name); None when no such server pod exists."""
    if server.kind == "deployment":
        return series.Entity("serving_deployment", (server.namespace, server.name))
    pod_id = (
        Pod.objects.filter(namespace=server.namespace, name=server.name, model_server__isnull=False)
        .order_by("-last_seen").values_list("id", flat=True).first()
    )
    return None if pod_id is None else series.Entity("serving", (pod_id,))


def server_series(server: Server, window: Window) -> list[dict[str, Any]]:
    """One point per bucket of the window, oldest first, from the catalogue's series machinery
    (metrics/series.py): raw samples spread over the buckets they overlap at any step, the 1m / 1h
    rollups at multiples of 60 s / 3600 s; buckets without samples hold nulls."""
    entity = entity_of(server)
    if entity is None:
        return series._points(
            series.Entity("serving", (0,)), window, {}, {}, 0, timezone.now(), series.SERVING_FIELDS
        )
    return series.series(entity, window, fields=series.SERVING_FIELDS)
