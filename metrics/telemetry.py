"""kubemonitor's own counters and histograms, counted as requests are served (see metrics/scrape.py).

Under gunicorn each worker is a process of its own, so these live in prometheus-client's
multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py sets it for the server
and wipes it on start): every worker writes its values to a file there and a scrape sums them, so
any worker answers with the totals of all. Without it (runserver, tests, one process) they are
ordinary in-process values.

Gauges that describe the data (pods and nodes known, rollup lag, collectors' newest reports) are
not kept here: metrics/scrape.py reads them from the database at scrape time, so they are the
same whichever worker answers and need no multiprocess bookkeeping.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# Our instruments only: no process or platform collectors, which have no meaning summed over
# workers (multiprocess mode) and are not what this endpoint is for.
REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds; from a 110-pod batch (about 20 ms of CPU) up to the 30 s worker timeout.
INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
READ_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

INGEST_BATCHES = Counter(
    "kubemonitor_ingest_batches",
    "Ingest requests by result (stored, duplicate, invalid, conflict, unauthorized, forbidden, "
    "too_large, unsupported_media, unavailable, error).",
    ["result"],
    registry=REGISTRY,
)
INGEST_SAMPLES = Counter(
    "kubemonitor_ingest_samples",
    "Samples received in valid batches, by kind (node, pod, container) and result (stored, duplicate).",
    ["kind", "result"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "kubemonitor_ingest_request_duration_seconds",
    "Wall time of POST /api/ingest/ in the API worker, every result included.",
    buckets=INGEST_BUCKETS,
    registry=REGISTRY,
)
READ_SECONDS = Histogram(
    "kubemonitor_read_request_duration_seconds",
    "Wall time of read API requests, by endpoint (router name and action).",
    ["endpoint"],
    buckets=READ_BUCKETS,
    registry=REGISTRY,
)
COLLECTOR_SOURCE_FAILURES = Counter(
    "kubemonitor_collector_source_failures",
    "Sources that collectors reported as failed in stored batches, by source name.",
    ["source"],
    registry=REGISTRY,
)

_RESULTS = {
    201: "stored",
    200: "duplicate",
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media",
    503: "unavailable",
}


def ingest_result(status: int, conflict: bool = False) -> str:
    if conflict:
        return "conflict"
    return _RESULTS.get(status, "error")


def observe_ingest(status: int, seconds: float, outcome: Any | None) -> None:
    """Count one ingest request. `outcome` is metrics.ingest.views.Outcome when the batch was valid."""
    conflict = bool(outcome is not None and outcome.conflict)
    INGEST_BATCHES.labels(ingest_result(status, conflict)).inc()
    INGEST_SECONDS.observe(seconds)
    if outcome is None or outcome.conflict:
        return
    result = "duplicate" if outcome.duplicate else "stored"
    INGEST_SAMPLES.labels("node", result).inc()
    INGEST_SAMPLES.labels("pod", result).inc(outcome.pods)
    INGEST_SAMPLES.labels("container", result).inc(outcome.containers)
    if not outcome.duplicate:
        for source in outcome.failed_sources:
            COLLECTOR_SOURCE_FAILURES.labels(source).inc()


def observe_read(endpoint: str, seconds: float) -> None:
    READ_SECONDS.labels(endpoint).observe(seconds)
