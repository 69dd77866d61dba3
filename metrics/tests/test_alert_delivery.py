"""Delivery to a real HTTP receiver on loopback: the Alertmanager webhook payload, grouping and
repeats, resolved once, silences, a receiver that is down for a while, the Alertmanager API, and
two evaluators at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from metrics.alerts import deliver, evaluate
from metrics.alerts.models import AlertRule, DeliveryAttempt, Notification, Receiver, Silence
from metrics.tests.alert_helpers import BASE, Receiver as HttpReceiver, cpu, cycle, make_node, make_pod

T = BASE


@pytest.fixture
def http():
    server = HttpReceiver()
    yield server
    server.stop()


@pytest.fixture
def rule(db):
    AlertRule.objects.all().delete()
    return AlertRule.objects.create(
        name="CPUHigh", metric="cpu_percent_of_limit", level="pod", comparison=">", threshold=80,
        for_duration=timedelta(0), window=timedelta(minutes=1), severity="critical",
        summary="{entity} uses {value:.0f}% of its CPU limit", runbook_url="https://runbooks.example/cpu",
    )


def webhook(url: str, **kwargs) -> Receiver:
    fields = dict(name="team", url=url + "/hook", group_wait=timedelta(seconds=30),
                  group_interval=timedelta(minutes=5), repeat_interval=timedelta(hours=4))
    fields.update(kwargs)
    return Receiver.objects.create(**fields)


def run(start_s: int, end_s: int, step: int = 30) -> None:
    for second in range(start_s, end_s, step):
        cycle(T + timedelta(seconds=second))


@pytest.mark.django_db
def test_a_firing_alert_is_sent_once_after_group_wait_in_the_webhook_format(rule, http):
    webhook(http.url, secret_header_name="Authorization", secret_header_value="Bearer s3cret")
    pod = make_pod(make_node(), "web-1")
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=4))
    run(0, 240)
    (path, headers, body), = http.bodies
    assert path == "/hook" and headers["Authorization"] == "Bearer s3cret"
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "team"
    assert body["groupKey"] == '{}:{alertname="CPUHigh"}' and body["groupLabels"] == {"alertname": "CPUHigh"}
    assert body["commonLabels"]["severity"] == "critical" and body["truncatedAlerts"] == 0
    (alert,) = body["alerts"]
    assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"] == "2026-12-01T12:00:00Z"
    assert alert["labels"]["pod"] == "web-1" and alert["fingerprint"] == evaluate.fingerprint(alert["labels"])
    assert alert["annotations"] == {"summary": "shop/web-1 uses 95% of its CPU limit",
                                    "runbook_url": "https://runbooks.example/cpu"}
    assert "/admin/metrics/alertrule/" in alert["generatorURL"]
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                         "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    assert Notification.objects.get().status == "sent"


@pytest.mark.django_db
def test_resolution_sends_resolved_once(rule, http):
    webhook(http.url, group_interval=timedelta(minutes=1))
    pod = make_pod(make_node(), "web-1")
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    cpu(pod, 10, T + timedelta(minutes=2), T + timedelta(minutes=20))
    run(0, 20 * 60)
    statuses = [b["status"] for b in http.payloads()]
    assert statuses == ["firing", "resolved"]
    resolved = http.payloads()[1]["alerts"][0]
    assert resolved["status"] == "resolved" and resolved["endsAt"] == "2026-12-01T12:02:30Z"


@pytest.mark.django_db
def test_a_firing_alert_is_repeated_every_repeat_interval_and_new_alerts_wait_for_group_interval(rule, http):
    webhook(http.url, repeat_interval=timedelta(minutes=10))
    node = make_node()
    cpu(make_pod(node, "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=25))
    cpu(make_pod(node, "web-2"), 95, T + timedelta(minutes=1), T + timedelta(minutes=25))
    run(0, 25 * 60)
    sent = [(b["status"], sorted(a["labels"]["pod"] for a in b["alerts"])) for b in http.payloads()]
    # 0:30 group_wait -> web-1; web-2 (firing from 1:30) waits for group_interval: 5:30; then the
    # unchanged group is repeated after repeat_interval: 15:30 (and next at 25:30, after the run).
    assert sent == [("firing", ["web-1"]), ("firing", ["web-1", "web-2"]), ("firing", ["web-1", "web-2"])]
    times = [t - T for t in Notification.objects.order_by("id").values_list("created", flat=True)]
    assert times == [timedelta(seconds=30), timedelta(minutes=5, seconds=30), timedelta(minutes=15, seconds=30)]


@pytest.mark.django_db
def test_group_by_splits_notifications(rule, http):
    webhook(http.url, group_by=["alertname", "namespace"])
    node = make_node()
    cpu(make_pod(node, "web-1", namespace="shop"), 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    cpu(make_pod(node, "web-1", namespace="pay"), 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    run(0, 60)
    assert sorted(b["groupLabels"]["namespace"] for b in http.payloads()) == ["pay", "shop"]


@pytest.mark.django_db
def test_a_silence_mutes_and_its_end_lets_the_alert_through(rule, http):
    webhook(http.url, group_wait=timedelta(0))
    Silence.objects.create(matchers='alertname="CPUHigh", namespace=~"sh.p"', starts_at=T - timedelta(minutes=1),
                           ends_at=T + timedelta(minutes=3), author="ops", comment="maintenance")
    node = make_node()
    cpu(make_pod(node, "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=6))
    cpu(make_pod(node, "web-1", namespace="pay"), 95, T - timedelta(minutes=1), T + timedelta(minutes=6))
    run(0, 150)
    assert [sorted(a["labels"]["namespace"] for a in b["alerts"]) for b in http.payloads()] == [["pay"]]
    assert rule.instances.get(namespace="shop").silenced
    run(180, 600)  # the silence ended at 3:00; the group's next flush (group_interval) includes it
    last = http.payloads()[-1]
    assert sorted(a["labels"]["namespace"] for a in last["alerts"]) == ["pay", "shop"]


@pytest.mark.django_db
def test_a_receiver_down_for_a_while_gets_every_notification_once_it_is_back(rule, http):
    webhook(http.url, group_wait=timedelta(0), group_interval=timedelta(minutes=1))
    port = http.port
    http.stop()
    pod = make_pod(make_node(), "web-1")
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    cpu(pod, 10, T + timedelta(minutes=2), T + timedelta(minutes=20))
    run(0, 5 * 60)  # fired and resolved while the receiver was down
    assert Notification.objects.filter(status="pending").count() == 2
    assert DeliveryAttempt.objects.filter(status_code__isnull=True).exists()  # connection refused, logged
    back = HttpReceiver(port=port)
    try:
        run(5 * 60, 20 * 60)
        assert [b["status"] for b in back.payloads()] == ["firing", "resolved"]  # in order, each once
    finally:
        back.stop()
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_failures_are_retried_with_backoff_and_logged(rule, http):
    http.status = 503
    webhook(http.url, group_wait=timedelta(0))
    cpu(make_pod(make_node(), "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=10))
    run(0, 120, step=5)
    notification = Notification.objects.get()
    times = [a.time - T for a in notification.deliveries.order_by("time")]
    # Sent at 0, retried after 10 s, 20 s, 40 s: the backoff doubles.
    assert times[:4] == [timedelta(0), timedelta(seconds=10), timedelta(seconds=30), timedelta(seconds=70)]
    assert notification.last_error.startswith("HTTP 503") and notification.status == "pending"
    http.status = 200
    run(120, 300, step=5)
    notification.refresh_from_db()
    assert notification.status == "sent"


@pytest.mark.django_db
def test_a_dead_receiver_does_not_hold_up_evaluation_or_other_receivers(rule, http):
    # A receiver that accepts the connection and never answers: it costs its timeout, once a cycle.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        webhook(f"http://127.0.0.1:{silent.getsockname()[1]}", name="dead", group_wait=timedelta(0),
                timeout=timedelta(seconds=0.5))
        webhook(http.url, name="alive", group_wait=timedelta(0))
        cpu(make_pod(make_node(), "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
        evaluate.run_cycle(T)
        assert rule.instances.get().state == "firing"  # evaluated and committed before any sending
        deliver.send_due(T)
        assert len(http.bodies) == 1
        assert "Timeout" in Notification.objects.get(receiver__name="dead").last_error
    finally:
        silent.close()


@pytest.mark.django_db
def test_an_alertmanager_gets_the_api_v2_payload_re_sent_while_firing_and_then_resolved(rule, http):
    Receiver.objects.create(name="am", kind="alertmanager", url=http.url)
    pod = make_pod(make_node(), "web-1")
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=3))
    cpu(pod, 10, T + timedelta(minutes=3), T + timedelta(minutes=6))
    run(0, 6 * 60)
    assert {path for path, _, _ in http.bodies} == {"/api/v2/alerts"}
    bodies = http.payloads()
    # Firing at 0:00, re-sent a minute later (and so on), resolved at 3:30 with its end time.
    assert [len(b) for b in bodies] == [1] * len(bodies) and len(bodies) >= 4
    first = bodies[0][0]
    assert first["labels"]["alertname"] == "CPUHigh" and first["startsAt"] == "2026-12-01T12:00:00Z"
    assert first["endsAt"] == "2026-12-01T12:04:00Z"  # valid for 4 re-send intervals
    assert bodies[-1][0]["endsAt"] == "2026-12-01T12:03:30Z"
    assert set(bodies[-1][0]) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}


@pytest.mark.django_db
def test_a_restarted_evaluator_sends_nothing_twice(rule, http):
    webhook(http.url, group_wait=timedelta(0))
    cpu(make_pod(make_node(), "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=3))
    cycle(T)
    # A restart: nothing in memory survives; the same moment evaluated again sends nothing.
    cycle(T)
    cycle(T + timedelta(seconds=30))
    assert len(http.bodies) == 1


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_at_once_fire_once(http):
    AlertRule.objects.all().delete()
    AlertRule.objects.create(name="CPUHigh", metric="cpu_percent_of_limit", comparison=">", threshold=80,
                             for_duration=timedelta(0))
    webhook(http.url, group_wait=timedelta(0))
    cpu(make_pod(make_node(), "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=3))
    barrier = threading.Barrier(2)
    results = []

    def evaluator() -> None:
        try:
            barrier.wait()
            for second in (0, 30, 60):
                results.append(cycle(T + timedelta(seconds=second)))
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluator) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.fired for r in results) == 1
    assert len(http.bodies) == 1
    assert Notification.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_evaluator_skips_its_cycle_while_another_holds_the_lock(http):
    from django.db import connections

    AlertRule.objects.all().delete()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [evaluate.LOCK_KEY])
            assert evaluate.run_cycle(T).skipped
            cursor.execute("COMMIT")
        assert not evaluate.run_cycle(T).skipped
    finally:
        other.close()


@pytest.mark.django_db
def test_an_alertmanager_back_from_an_outage_gets_the_newest_state_with_the_resolved_alerts(rule, http):
    Receiver.objects.create(name="am", kind="alertmanager", url=http.url)
    port = http.port
    http.stop()
    node = make_node()
    cpu(make_pod(node, "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    cpu(make_pod(node, "web-2"), 95, T - timedelta(minutes=1), T + timedelta(minutes=10))
    run(0, 6 * 60)  # both fired; web-1 stopped reporting and resolved at 3:00; the Alertmanager was down
    back = HttpReceiver(port=port)
    try:
        run(6 * 60, 9 * 60)
        first = back.payloads()[0]
        ends = {a["labels"]["pod"]: a["endsAt"] for a in first}
        assert ends["web-1"] == "2026-12-01T12:03:00Z"  # the resolution was not lost
        assert ends["web-2"] > "2026-12-01T12:06"  # still firing, valid for 4 more minutes
        assert Notification.objects.filter(status="pending").count() == 0
    finally:
        back.stop()
