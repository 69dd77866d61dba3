"""Model servers (vLLM / SGLang pods) as the read API shows them: newest figures and series.

A model server is a Deployment whose pods serve a model, or a pod no Deployment owns. Its figures
come from metrics_servingsample, the raw samples: there are no serving rollups yet, so series
reach back RETENTION_RAW_DAYS.

Series are sums, like metrics/series.py: each sample carries what happened during its interval,
and a point holds the samples whose interval starts in its bucket. Token and request counts (and
their rates: the sum over the bucket's length) and latency means (sum of sums over sum of counts)
are exact. p50/p95 cannot be merged from percentiles: a point gives the highest replica interval
p95 in the bucket, an upper bound. Gauges (requests running/waiting, KV cache use) are
time-weighted: requests summed over replicas, KV cache % averaged over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from metrics.series import EPOCH, LATEST_LOOKBACK, Window

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


_SERIES_SQL = """
SELECT date_bin(%s * interval '1 second', s.time, %s) AS b,
       count(*) AS samples,
       count(DISTINCT s.pod_id) AS replicas,
       sum(s.interval_seconds) AS covered_seconds,
       sum(s.prompt_tokens)::float8, sum(s.generation_tokens)::float8,
       sum(s.requests_succeeded)::float8, sum(s.preemptions)::float8,
       sum(s.requests_running * s.interval_seconds), sum(s.requests_waiting * s.interval_seconds),
       sum(s.kv_cache_usage_percent * s.interval_seconds),
       sum(s.interval_seconds) FILTER (WHERE s.kv_cache_usage_percent IS NOT NULL),
       sum(s.ttft_seconds_sum), sum(s.ttft_count)::float8, max(s.ttft_p95_seconds),
       sum(s.itl_seconds_sum), sum(s.itl_count)::float8, max(s.itl_p95_seconds),
       sum(s.e2e_seconds_sum), sum(s.e2e_count)::float8, max(s.e2e_p95_seconds),
       bool_or(s.restarted)
FROM metrics_servingsample s
WHERE {where} AND s.time >= %s AND s.time < %s
GROUP BY 1 ORDER BY 1
"""

POINT_FIELDS = (
    "samples", "replicas", "coverage", "prompt_tokens", "generation_tokens", "requests_succeeded",
    "preemptions", "prompt_tokens_per_second", "generation_tokens_per_second",
    "requests_per_second", "requests_running", "requests_waiting", "kv_cache_usage_percent",
    "ttft_mean_seconds", "ttft_p95_seconds", "itl_mean_seconds", "itl_p95_seconds",
    "e2e_mean_seconds", "e2e_p95_seconds", "restarted",
)


def series(server: Server, window: Window) -> list[dict[str, Any]]:
    """One point per bucket of the window, oldest first; buckets without samples hold nulls."""
    where, params = _where(server)
    with connection.cursor() as cursor:
        cursor.execute(
            _SERIES_SQL.format(where=where), [window.step, EPOCH, *params, window.start, window.end]
        )
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
    points = []
    step = float(window.step)
    bucket = window.start
    while bucket < window.end:
        point: dict[str, Any] = {"time": bucket, **dict.fromkeys(POINT_FIELDS)}
        row = rows.get(bucket)
        if row is not None:
            (samples, replicas, covered, prompt, generation, succeeded, preemptions, running,
             waiting, kv, kv_seconds, *latency, restarted) = row
            # Gauges: time-weighted over the seconds each replica covered, summed over replicas.
            per_replica = covered / replicas
            point.update(
                samples=samples, replicas=replicas, coverage=min(1.0, covered / (replicas * step)),
                prompt_tokens=prompt, generation_tokens=generation, requests_succeeded=succeeded,
                preemptions=preemptions, prompt_tokens_per_second=_rate(prompt, step),
                generation_tokens_per_second=_rate(generation, step),
                requests_per_second=_rate(succeeded, step),
                requests_running=_rate(running, per_replica),
                requests_waiting=_rate(waiting, per_replica),
                kv_cache_usage_percent=_rate(kv, kv_seconds), restarted=restarted,
            )
            for i, name in enumerate(LATENCIES):
                total, count, p95 = latency[3 * i: 3 * i + 3]
                point[f"{name}_mean_seconds"] = total / count if count else None
                point[f"{name}_p95_seconds"] = p95
        points.append(point)
        bucket += timedelta(seconds=window.step)
    return points
