"""GET /metrics: kubemonitor's own figures in the Prometheus text format (docs/api.md "/metrics").

Two halves:
* counters and histograms kept as requests are served (metrics.telemetry), summed over gunicorn
  workers through PROMETHEUS_MULTIPROC_DIR;
* gauges read from the database at scrape time (DatabaseCollector): nodes and pods known, nodes
  not reporting, rollup lag and refresh duration, each collector's newest cycle and source
  status, and active alerts by severity once an alerts table exists. Read at scrape time they are
  the same whichever worker answers, and a restart loses nothing.

Every query here is bounded by the inventory (nodes, pods) or reads one row per node through the
(node, time) index: none counts rows of a sample hypertable.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any, Iterable, Iterator

from django.db import connection
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from metrics import backend, rollups, telemetry
from metrics.auth import ApiTokenAuthentication, CanRead
from metrics.series import LATEST_LOOKBACK

# A node whose newest interval ended more than this many of its own intervals ago is not reporting.
MISSED_INTERVALS = 3
# Nodes that never said their interval (no node sample left) are judged against this one.
DEFAULT_INTERVAL_SECONDS = 10.0

NODES_SQL = """
SELECT n.name, n.last_seen, n.collector_info, s.interval_seconds
FROM metrics_node n
LEFT JOIN LATERAL (
    SELECT interval_seconds FROM metrics_nodesample
    WHERE node_id = n.id ORDER BY "time" DESC LIMIT 1
) s ON true
"""

# --- Alerts hook ----------------------------------------------------------------------------------
# Alerting is built on another branch (`alerts`). Once its table exists, active alerts are
# exported by severity; until then nothing is. If that branch names its table or columns
# otherwise, change these two lines (the test in metrics/tests/test_scrape.py covers them only
# where the table exists).
# Alerts firing now (metrics/alerts/models.py AlertInstance), every severity named so that a
# severity with none firing reads 0 rather than disappearing. Not a hypertable: counting is cheap.
SEVERITIES = ("info", "warning", "critical")
ALERTS_ACTIVE_SQL = (
    "SELECT s.severity, count(a.id) FROM unnest(%s::text[]) AS s(severity) "
    "LEFT JOIN metrics_alertinstance a ON a.severity = s.severity AND a.state = 'firing' "
    "GROUP BY s.severity ORDER BY s.severity"
)


def alerts_active(cursor: Any) -> list[tuple[str, int]]:
    cursor.execute(ALERTS_ACTIVE_SQL, [list(SEVERITIES)])
    return [(str(severity), int(count)) for severity, count in cursor.fetchall()]


# --------------------------------------------------------------------------------------------------


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class DatabaseCollector:
    """Gauges read from the database when /metrics is scraped."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        with connection.cursor() as cursor:
            yield from self._nodes(cursor, now)
            yield from self._pods(cursor, now)
            yield from self._rollups(cursor, now)
            active = alerts_active(cursor)
        alerts = _gauge("kubemonitor_alerts_active", "Alerts firing now, by severity.", ["severity"])
        for severity, count in active:
            alerts.add_metric([severity], count)
        yield alerts

    def _nodes(self, cursor: Any, now: datetime) -> Iterator[Metric]:
        cursor.execute(NODES_SQL)
        rows = cursor.fetchall()
        known = _gauge("kubemonitor_nodes_known", "Nodes in the inventory.")
        silent = _gauge(
            "kubemonitor_nodes_not_reporting",
            f"Nodes whose newest batch ended more than {MISSED_INTERVALS} of their intervals ago.",
        )
        age = _gauge(
            "kubemonitor_node_last_report_age_seconds", "Seconds since the end of the node's newest batch.", ["node"]
        )
        cycle = _gauge(
            "kubemonitor_collector_cycle_cpu_seconds",
            "CPU the node's collector spent on its newest cycle, as it reported.",
            ["node"],
        )
        source_up = _gauge(
            "kubemonitor_collector_source_up",
            "1 when the source worked in the collector's newest batch, 0 when it failed.",
            ["node", "source"],
        )
        source_seconds = _gauge(
            "kubemonitor_collector_source_seconds",
            "Seconds the source took in the collector's newest batch, as it reported.",
            ["node", "source"],
        )
        not_reporting = 0
        for name, last_seen, info, interval in rows:
            seconds = (now - last_seen).total_seconds()
            if seconds > MISSED_INTERVALS * (interval or DEFAULT_INTERVAL_SECONDS):
                not_reporting += 1
            age.add_metric([name], max(0.0, seconds))
            # Django has psycopg hand jsonb over as text (the JSONField decodes it, raw SQL does not).
            info = json.loads(info) if isinstance(info, str) else (info or {})
            if info.get("cycle_cpu_seconds") is not None:
                cycle.add_metric([name], float(info["cycle_cpu_seconds"]))
            for source, status in sorted((info.get("sources") or {}).items()):
                source_up.add_metric([name, source], 1.0 if status.get("ok") else 0.0)
                if status.get("seconds") is not None:
                    source_seconds.add_metric([name, source], float(status["seconds"]))
        known.add_metric([], len(rows))
        silent.add_metric([], not_reporting)
        yield from (known, silent, age, cycle, source_up, source_seconds)

    def _pods(self, cursor: Any, now: datetime) -> Iterator[Metric]:
        # The Pod inventory is an ordinary table (not a hypertable); its last_seen lags by up to
        # a minute (metrics.models.Pod), hence the lookback of /api/cluster/ and a minute more.
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE last_seen >= %s) FROM metrics_pod",
            [now - rollups.MINUTE - LATEST_LOOKBACK],
        )
        total, reporting = cursor.fetchone()
        known = _gauge("kubemonitor_pods_known", "Pods in the inventory, gone ones included until removed.")
        known.add_metric([], total)
        recent = _gauge("kubemonitor_pods_reporting", "Pods in a batch of the last few minutes.")
        recent.add_metric([], reporting)
        yield from (known, recent)

    def _rollups(self, cursor: Any, now: datetime) -> Iterator[Metric]:
        tier = backend.storage_tier()
        if tier is None:
            return
        edges = _materialized_edges(cursor, tier)
        lag = _gauge(
            "kubemonitor_rollup_lag_seconds",
            "Seconds between now and the end of the materialized rollups (tier tsl: the continuous "
            "aggregates' watermark); reads add the newer raw data on the fly.",
            ["resolution"],
        )
        for resolution in ("1m", "1h"):
            edge = edges.get(resolution)
            if edge is not None:
                lag.add_metric([resolution], max(0.0, (now - edge).total_seconds()))
        yield lag
        duration = _gauge(
            "kubemonitor_rollup_refresh_duration_seconds",
            "Duration of the newest rollup refresh (tier tsl: the longest newest run of the "
            "continuous-aggregate refresh policies).",
        )
        finished = _gauge(
            "kubemonitor_rollup_refresh_timestamp_seconds", "When the newest rollup refresh finished (Unix time)."
        )
        seconds, at = _refresh_run(cursor, tier)
        if seconds is not None:
            duration.add_metric([], seconds)
        if at is not None:
            finished.add_metric([], at.timestamp())
        yield from (duration, finished)


def _materialized_edges(cursor: Any, tier: str) -> dict[str, datetime | None]:
    if tier != "tsl":
        state = rollups.state()
        return {r: state.get(f"materialized_{r}") for r in ("1m", "1h")}
    edges: dict[str, datetime | None] = {}
    for resolution in ("1m", "1h"):
        # An aggregate that never materialized anything has the lowest timestamp PostgreSQL has
        # as its watermark (4714 BC), which Python cannot hold: no edge then.
        cursor.execute(
            "SELECT CASE WHEN w > '-infinity' AND w >= timestamptz '1970-01-01' THEN w END FROM ("
            " SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id)) AS w"
            " FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s) s",
            [f"metrics_rollup_pod_{resolution}"],
        )
        row = cursor.fetchone()
        edges[resolution] = row[0] if row else None
    return edges


def _refresh_run(cursor: Any, tier: str) -> tuple[float | None, datetime | None]:
    if tier == "tsl":
        cursor.execute(
            # A policy that never succeeded reports -infinity, which Python cannot hold.
            "SELECT max(extract(epoch FROM s.last_run_duration)), "
            "max(s.last_successful_finish) FILTER (WHERE s.last_successful_finish > '-infinity') "
            "FROM timescaledb_information.job_stats s JOIN timescaledb_information.jobs j USING (job_id) "
            "WHERE j.proc_name = 'policy_refresh_continuous_aggregate'"
        )
        seconds, at = cursor.fetchone()
        return (None if seconds is None else float(seconds)), at
    cursor.execute(f"SELECT refresh_seconds, refreshed_at FROM {rollups.STATE_TABLE} WHERE id = 1")
    row = cursor.fetchone()
    return (row[0], row[1]) if row else (None, None)


class _Instruments:
    """The request-time instruments, from this process or summed over all workers' files."""

    def collect(self) -> Iterator[Metric]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            yield from merged.collect()
        else:
            yield from telemetry.REGISTRY.collect()


def exposition(now: datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Instruments())  # type: ignore[arg-type]
    registry.register(DatabaseCollector(now))  # type: ignore[arg-type]
    return generate_latest(registry)


class PrometheusText(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        # Only errors (401/403) come through here as data; the figures are an HttpResponse.
        detail = data.get("detail", data) if isinstance(data, dict) else data
        return f"# {detail}\n".encode()


class _PlainTextAlways(BaseContentNegotiation):
    # Prometheus asks for OpenMetrics first and text/plain after; one format is served to every
    # Accept header rather than a 406.
    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


class MetricsView(APIView):
    """kubemonitor's own figures for Prometheus (optional: kubemonitor needs no Prometheus)."""

    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [CanRead]
    renderer_classes = [PrometheusText]
    content_negotiation_class = _PlainTextAlways
    throttle_classes: list[Any] = []
    schema = None  # plain text, not part of the JSON API's OpenAPI document

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
