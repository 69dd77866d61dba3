"""GET /metrics: kubemonitor's own figures in the Prometheus text format."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from metrics import rollups, scrape
from metrics.models import ApiToken
from metrics.tests import factories as f
from metrics.tests.factories import reset_rollups
from metrics.tests.gunicorn_server import Gunicorn, database_url_of_test_db
from metrics.tests.ingest_helpers import post
from metrics.tokens import create_token


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by (name, sorted labels); the official parser checks the format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def read_token(db) -> str:
    return create_token("scraper", ApiToken.Scope.READ)[1]


def scrape_text(client: Client, token: str) -> str:
    # What Prometheus sends: OpenMetrics preferred, the text format accepted.
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def counter(text: str, name: str, **labels: str) -> float:
    return value(text, name, **labels) or 0.0


def test_it_answers_the_text_format_whatever_the_client_accepts(db, read_token):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {read_token}", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")


def test_it_refuses_a_scrape_without_a_read_token(db, ingest_token):
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {ingest_token}").status_code == 403


@override_settings(ALLOW_ANONYMOUS_READS=True)
def test_it_answers_anyone_when_anonymous_reads_are_allowed(db):
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert "kubemonitor_nodes_known 0.0" in response.content.decode()


def test_it_counts_ingest_batches_and_samples_by_result(db, ingest_token, read_token):
    client = Client()
    before = scrape_text(client, read_token)
    batch = f.batch("worker-1", pods=3)
    containers = sum(len(p["containers"]) for p in batch["pods"])
    batch["collector"]["sources"]["kubelet"] = {"ok": False, "seconds": 3.0, "error": "timeout"}
    assert post(client, ingest_token, batch).status_code == 201
    assert post(client, ingest_token, batch).status_code == 200
    bad = copy.deepcopy(batch)
    bad["pods"][0]["foo"] = 1
    assert post(client, ingest_token, bad).status_code == 400
    assert post(client, None, batch).status_code == 401
    after = scrape_text(client, read_token)

    def delta(name: str, **labels: str) -> float:
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert delta("kubemonitor_ingest_batches_total", result="stored") == 1
    assert delta("kubemonitor_ingest_batches_total", result="duplicate") == 1
    assert delta("kubemonitor_ingest_batches_total", result="invalid") == 1
    assert delta("kubemonitor_ingest_batches_total", result="unauthorized") == 1
    assert delta("kubemonitor_ingest_samples_total", kind="pod", result="stored") == 3
    assert delta("kubemonitor_ingest_samples_total", kind="container", result="stored") == containers
    assert delta("kubemonitor_ingest_samples_total", kind="node", result="stored") == 1
    assert delta("kubemonitor_ingest_samples_total", kind="pod", result="duplicate") == 3
    assert delta("kubemonitor_ingest_request_duration_seconds_count") == 4
    # Only the stored batch counts its failed source; the retry is the same report.
    assert delta("kubemonitor_collector_source_failures_total", source="kubelet") == 1
    # The newest report of the node, read from the database.
    assert value(after, "kubemonitor_collector_source_up", node="worker-1", source="kubelet") == 0
    assert value(after, "kubemonitor_collector_source_up", node="worker-1", source="cgroup") == 1
    assert value(after, "kubemonitor_collector_source_seconds", node="worker-1", source="kubelet") == 3.0
    assert value(after, "kubemonitor_collector_cycle_cpu_seconds", node="worker-1") == pytest.approx(0.031)
    assert value(after, "kubemonitor_nodes_known") == 1
    assert value(after, "kubemonitor_pods_known") == 3
    assert value(after, "kubemonitor_pods_reporting") == 3


def test_it_counts_a_node_as_not_reporting_after_three_of_its_intervals(db, ingest_token, read_token):
    client = Client()
    base = f.tick(120, 30)  # a multiple of both 10 s and 15 s
    # At base + 35 s: worker-1 (10 s) ended 25 s ago, 2.5 intervals: reporting. worker-2 (10 s)
    # ended 35 s ago, 3.5 intervals: not. worker-3 (15 s) ended 35 s ago, 2.3 intervals: reporting.
    assert post(client, ingest_token, f.batch("worker-1", end=base + timedelta(seconds=10), pods=1)).status_code == 201
    assert post(client, ingest_token, f.batch("worker-2", end=base, pods=1)).status_code == 201
    assert post(client, ingest_token, f.batch("worker-3", end=base, pods=1, interval=15.0)).status_code == 201
    text = scrape.exposition(now=base + timedelta(seconds=35)).decode()
    assert value(text, "kubemonitor_nodes_known") == 3
    assert value(text, "kubemonitor_nodes_not_reporting") == 1
    assert value(text, "kubemonitor_node_last_report_age_seconds", node="worker-2") == 35
    assert value(text, "kubemonitor_node_last_report_age_seconds", node="worker-1") == 25


def test_it_times_read_requests_by_endpoint(db, read_token):
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {read_token}"}
    before = scrape_text(client, read_token)
    assert client.get("/api/nodes/", **auth).status_code == 200
    assert client.get("/api/nodes/nope/", **auth).status_code == 404
    after = scrape_text(client, read_token)
    name = "kubemonitor_read_request_duration_seconds_count"
    assert counter(after, name, endpoint="node-list") - counter(before, name, endpoint="node-list") == 1
    assert counter(after, name, endpoint="node-retrieve") - counter(before, name, endpoint="node-retrieve") == 1


@pytest.mark.django_db(transaction=True)
def test_it_reports_the_rollup_lag_and_the_refresh_duration(ingest_token, read_token):
    reset_rollups()  # rollup tables and their state outlive the flush between tests
    client = Client()
    assert post(client, ingest_token, f.batch("worker-1", end=f.tick(120), pods=2)).status_code == 201
    result = rollups.refresh()
    text = scrape_text(client, read_token)
    lag = value(text, "kubemonitor_rollup_lag_seconds", resolution="1m")
    assert lag is not None and 0 <= lag < 3 * 60
    if result.tier != "tsl":
        assert value(text, "kubemonitor_rollup_refresh_duration_seconds") == pytest.approx(result.seconds)
        assert value(text, "kubemonitor_rollup_refresh_timestamp_seconds") is not None


def test_it_exports_the_firing_alerts_by_severity_with_zero_for_the_quiet_ones(db, read_token):
    from metrics.alerts.models import AlertInstance, AlertRule

    now = timezone.now()
    rule = AlertRule.objects.create(name="ScrapeTest", metric="cpu_percent_of_limit", threshold=80)
    for i, (state, severity) in enumerate(
        [("firing", "critical"), ("firing", "critical"), ("firing", "warning"), ("pending", "info"),
         ("resolved", "info")]
    ):
        AlertInstance.objects.create(
            rule=rule, fingerprint=f"{i:016x}", state=state, severity=severity, started_at=now,
            last_true_at=now, ended_at=now if state == "resolved" else None,
        )
    text = scrape_text(Client(), read_token)
    assert value(text, "kubemonitor_alerts_active", severity="critical") == 2
    assert value(text, "kubemonitor_alerts_active", severity="warning") == 1
    # Pending and resolved alerts are not firing.
    assert value(text, "kubemonitor_alerts_active", severity="info") == 0


@pytest.mark.django_db(transaction=True)
def test_it_sums_every_gunicorn_workers_counters(tmp_path, ingest_token, read_token):
    """Two workers, each counting what it served: whichever answers the scrape gives the total."""
    with Gunicorn(tmp_path / "gunicorn.log", database_url_of_test_db(), args=["--workers", "2"]) as server:
        headers = {"Authorization": f"Bearer {ingest_token}", "Content-Type": "application/json"}
        bodies = [f.batch(f"w-{i}", pods=20) for i in range(16)]

        def send(body: dict) -> int:
            return requests.post(f"{server.url}/api/ingest/", json=body, headers=headers, timeout=30).status_code

        # Four at a time, so both sync workers serve some.
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(send, bodies)) == [201] * len(bodies)
        for _ in range(6):
            response = requests.get(
                f"{server.url}/metrics", headers={"Authorization": f"Bearer {read_token}"}, timeout=10
            )
            assert response.status_code == 200
            assert value(response.text, "kubemonitor_ingest_batches_total", result="stored") == len(bodies)
            assert value(response.text, "kubemonitor_ingest_samples_total", kind="pod", result="stored") == 20 * len(bodies)
