"""/api/alerts/ and /api/alert-rules/: filters, history, pagination, auth; the admin pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from metrics.alerts.evaluate import run_cycle
from metrics.alerts.models import AlertRule, DeliveryAttempt, Notification, Receiver, Silence
from metrics.models import ApiToken
from metrics.tests.alert_helpers import BASE, cpu, make_node, make_pod
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db
T = BASE


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def alerts(db):
    """web-1 (shop, node a) firing critical; web-2 (pay, node b) resolved; db-1 pending."""
    AlertRule.objects.all().delete()
    AlertRule.objects.create(name="CPUHigh", metric="cpu_percent_of_limit", comparison=">", threshold=80,
                             for_duration=timedelta(0), severity="critical")
    AlertRule.objects.create(name="CPUSlow", metric="cpu_percent_of_limit", comparison=">", threshold=50,
                             for_duration=timedelta(hours=1), severity="info", namespace="ops")
    a, b = make_node("a"), make_node("b")
    cpu(make_pod(a, "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    cpu(make_pod(b, "web-2", namespace="pay"), 95, T - timedelta(minutes=1), T)
    cpu(make_pod(a, "db-1", namespace="ops"), 60, T - timedelta(minutes=1), T + timedelta(minutes=2))
    run_cycle(T)
    run_cycle(T + timedelta(minutes=1))


def pods(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(a["labels"]["pod"] for a in response.json()["results"])


def test_it_lists_active_alerts_by_default_and_filters_them(reader, alerts):
    assert pods(reader.get("/api/alerts/")) == ["db-1", "web-1"]
    assert pods(reader.get("/api/alerts/?state=firing")) == ["web-1"]
    assert pods(reader.get("/api/alerts/?severity=info")) == ["db-1"]
    assert pods(reader.get("/api/alerts/?namespace=shop")) == ["web-1"]
    assert pods(reader.get("/api/alerts/?node=a&state=firing&state=pending")) == ["db-1", "web-1"]
    first = reader.get("/api/alerts/?state=firing").json()["results"][0]
    assert first["rule"] == "CPUHigh" and first["value"] == pytest.approx(95) and first["ended_at"] is None


def test_history_is_the_resolved_alerts_in_a_time_window(reader, alerts):
    resolved = reader.get("/api/alerts/?state=resolved")
    assert pods(resolved) == ["web-2"]
    assert resolved.json()["results"][0]["ended_at"] == "2026-12-01T12:01:00Z"
    assert pods(reader.get("/api/alerts/?state=resolved&since=2026-12-01T12:00:30Z")) == ["web-2"]
    assert pods(reader.get("/api/alerts/?state=resolved&since=2026-12-01T12:02:00Z")) == []
    assert pods(reader.get("/api/alerts/?state=resolved&until=2026-12-01T11:00:00Z")) == []


@pytest.mark.parametrize(("query", "field"), [
    ("state=burning", "state"), ("severity=huge", "severity"), ("since=yesterday", "since"), ("limit=0", "limit"),
])
def test_bad_filters_get_a_400_naming_them(reader, alerts, query, field):
    response = reader.get(f"/api/alerts/?{query}")
    assert response.status_code == 400 and field in response.json()


def test_alerts_are_paged_with_a_cursor(reader, alerts):
    page = reader.get("/api/alerts/?limit=1").json()
    assert len(page["results"]) == 1 and "cursor=" in page["next"]
    second = reader.get(page["next"]).json()
    assert len(second["results"]) == 1 and second["results"][0]["id"] != page["results"][0]["id"]


def test_alert_rules_are_listed_and_read_by_name(reader, alerts):
    names = [r["name"] for r in reader.get("/api/alert-rules/").json()["results"]]
    assert names == ["CPUHigh", "CPUSlow"]
    rule = reader.get("/api/alert-rules/CPUSlow/").json()
    assert rule["for_seconds"] == 3600 and rule["namespace"] == "ops" and rule["needs"] is None
    assert [r["name"] for r in reader.get("/api/alert-rules/?severity=critical").json()["results"]] == ["CPUHigh"]
    assert reader.get("/api/alert-rules/nope/").status_code == 404


def test_the_alert_endpoints_need_a_read_token(db):
    assert Client().get("/api/alerts/").status_code == 401
    assert Client().get("/api/alert-rules/").status_code == 401


def test_the_admin_pages_of_alerting_load(client, alerts):
    user = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    receiver = Receiver.objects.create(name="team", url="http://127.0.0.1:9/hook")
    notification = Notification.objects.create(receiver=receiver, group_key="{}:{}", payload={}, created=T,
                                               next_attempt_at=T, alert_status="firing")
    DeliveryAttempt.objects.create(notification=notification, time=T, error="ConnectionError", seconds=0.1)
    silence = Silence.objects.create(matchers='alertname="CPUHigh"', starts_at=T, ends_at=T + timedelta(hours=1),
                                     author="ops")
    for model, pk in (("alertrule", AlertRule.objects.first().pk), ("silence", silence.pk),
                      ("receiver", receiver.pk), ("notification", notification.pk)):
        assert client.get(f"/admin/metrics/{model}/").status_code == 200
        assert client.get(f"/admin/metrics/{model}/{pk}/change/").status_code == 200
    assert client.get("/admin/metrics/alertinstance/").status_code == 200
    assert client.get("/admin/metrics/silence/add/").status_code == 200


def test_the_admin_refuses_a_silence_with_a_bad_matcher(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    response = client.post("/admin/metrics/silence/add/", {
        "matchers": 'alertname=~"(unclosed"', "starts_at_0": "2026-12-01", "starts_at_1": "12:00:00",
        "ends_at_0": "2026-12-01", "ends_at_1": "13:00:00", "author": "ops", "comment": "",
    })
    assert response.status_code == 200 and "not a regular expression" in response.content.decode()
    assert not Silence.objects.exists()
