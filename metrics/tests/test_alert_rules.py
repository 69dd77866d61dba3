"""Alert states from stored data: pending, firing, resolved; `for`, `keep_firing_for`; one query
per rule; the catalogue's metrics over pods, groups and nodes; the default rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from metrics.alerts.catalogue import METRICS, Metric, pod_ratio
from metrics.alerts.evaluate import fingerprint, run_cycle
from metrics.alerts.models import AlertInstance, AlertRule
from metrics.tests.alert_helpers import BASE, cpu, make_node, make_pod

pytestmark = pytest.mark.django_db

T = BASE


def cpu_rule(**kwargs) -> AlertRule:
    fields = dict(name="CPUHigh", metric="cpu_percent_of_limit", level="pod", comparison=">", threshold=80,
                  for_duration=timedelta(minutes=5), window=timedelta(minutes=1), severity="warning",
                  summary="{entity} uses {value:.0f}% of its CPU limit")
    fields.update(kwargs)
    return AlertRule.objects.create(**fields)


@pytest.fixture
def rules_cleared(db):
    AlertRule.objects.all().delete()  # the default rules would alert on the test data too


def states(rule: AlertRule) -> list[tuple[str, str]]:
    return sorted((i.labels.get("pod", i.labels.get("node", "")), i.state) for i in rule.instances.all())


def test_the_default_rules_are_installed_and_editable(db):
    names = set(AlertRule.objects.values_list("name", flat=True))
    assert {"PodCPUHigh", "PodMemoryHigh", "PodGPUUtilisationHigh", "PodNotRunning", "NodeNotReporting"} <= names
    cpu_default = AlertRule.objects.get(name="PodCPUHigh")
    assert (cpu_default.threshold, cpu_default.severity, cpu_default.for_duration) == (80, "warning", timedelta(minutes=5))
    assert AlertRule.objects.get(name="NodeNotReporting").severity == "critical"
    assert AlertRule.objects.get(name="PodGPUUtilisationHigh").severity == "critical"
    cpu_default.threshold = 95
    cpu_default.full_clean()
    cpu_default.save()


def test_a_threshold_crossed_for_less_than_for_never_fires(rules_cleared):
    rule = cpu_rule()
    pod = make_pod(make_node(), "web-1")
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=4))
    cpu(pod, 20, T + timedelta(minutes=4), T + timedelta(minutes=10))
    for second in range(0, 600, 30):
        run_cycle(T + timedelta(seconds=second))
        assert not rule.instances.filter(state="firing").exists()
    assert not rule.instances.exists()  # the pending alert was dropped when it cleared


def test_a_threshold_crossed_long_enough_fires_once_with_current_and_peak_value(rules_cleared):
    rule = cpu_rule()
    pod = make_pod(make_node(), "web-1")
    make_pod(pod.node, "idle")
    cpu(make_pod(pod.node, "idle-2"), 10, T - timedelta(minutes=1), T + timedelta(minutes=8))
    cpu(pod, 90, T - timedelta(minutes=1), T + timedelta(minutes=3))
    cpu(pod, 97, T + timedelta(minutes=3), T + timedelta(minutes=8))
    fired = []
    for second in range(0, 480, 30):
        fired.append(run_cycle(T + timedelta(seconds=second)).fired)
    assert sum(fired) == 1 and fired.index(1) == 10  # at 5:00, the first cycle with 5 minutes held
    (instance,) = rule.instances.all()
    assert instance.state == "firing" and instance.started_at == T and instance.fired_at == T + timedelta(minutes=5)
    assert instance.value == pytest.approx(97) and instance.peak_value == pytest.approx(97)
    assert instance.labels == {"alertname": "CPUHigh", "severity": "warning", "namespace": "shop",
                               "pod": "web-1", "node": "worker-1"}
    assert instance.fingerprint == fingerprint(instance.labels)
    assert instance.annotations["summary"] == "shop/web-1 uses 97% of its CPU limit"


def test_flapping_within_keep_firing_for_does_not_resolve(rules_cleared):
    rule = cpu_rule(for_duration=timedelta(0), keep_firing_for=timedelta(minutes=2))
    pod = make_pod(make_node(), "web-1")
    # High, then a dip that keeps the 1-minute average below the threshold from 2:30 to 3:00
    # (last above at 2:00, above again at 3:30: 90 s < keep_firing_for), then low for good.
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    cpu(pod, 10, T + timedelta(minutes=2), T + timedelta(minutes=2, seconds=30))
    cpu(pod, 95, T + timedelta(minutes=2, seconds=30), T + timedelta(minutes=5))
    cpu(pod, 10, T + timedelta(minutes=5), T + timedelta(minutes=12))
    seen = []
    for second in range(0, 720, 30):
        run_cycle(T + timedelta(seconds=second))
        seen.append(rule.instances.get().state if rule.instances.count() == 1 else "several")
    # Firing from the first cycle; the dip never resolves it; last above at 5:00, resolved 2
    # minutes later, and stays resolved.
    resolved_at = seen.index("resolved")
    assert set(seen[:resolved_at]) == {"firing"} and set(seen[resolved_at:]) == {"resolved"}
    assert rule.instances.get().ended_at == T + timedelta(minutes=7)


def test_an_alert_that_fires_again_after_resolving_is_a_new_instance_with_the_same_fingerprint(rules_cleared):
    rule = cpu_rule(for_duration=timedelta(0))
    pod = make_pod(make_node(), "web-1")
    cpu(pod, 95, T - timedelta(minutes=1), T + timedelta(minutes=1))
    cpu(pod, 10, T + timedelta(minutes=1), T + timedelta(minutes=4))
    cpu(pod, 95, T + timedelta(minutes=4), T + timedelta(minutes=6))
    for second in range(0, 360, 30):
        run_cycle(T + timedelta(seconds=second))
    instances = list(rule.instances.order_by("started_at"))
    assert [i.state for i in instances] == ["resolved", "firing"]
    assert instances[0].fingerprint == instances[1].fingerprint


def test_each_rule_is_one_query_whatever_the_number_of_pods(rules_cleared):
    cpu_rule(for_duration=timedelta(0))
    node = make_node()
    for i in range(30):
        cpu(make_pod(node, f"web-{i}"), 95 if i % 2 else 10, T - timedelta(minutes=1), T)
    with CaptureQueriesContext(connection) as queries:
        result = run_cycle(T)
    assert result.fired == 15
    assert sum("metrics_podsample" in q["sql"] for q in queries.captured_queries) == 1


def test_selectors_narrow_the_entities(rules_cleared):
    rule = cpu_rule(for_duration=timedelta(0), namespace="shop", pod_labels={"app": "web"})
    node = make_node()
    cpu(make_pod(node, "web-1", labels={"app": "web"}), 95, T - timedelta(minutes=1), T)
    cpu(make_pod(node, "db-1", labels={"app": "db"}), 95, T - timedelta(minutes=1), T)
    cpu(make_pod(node, "web-1", namespace="ops", labels={"app": "web"}), 95, T - timedelta(minutes=1), T)
    run_cycle(T)
    assert states(rule) == [("web-1", "firing")]
    assert rule.instances.get().labels["namespace"] == "shop"


def test_a_deployment_level_rule_gives_one_alert_per_deployment(rules_cleared):
    rule = cpu_rule(level="deployment", for_duration=timedelta(0))
    node = make_node()
    cpu(make_pod(node, "web-1", deployment="web"), 95, T - timedelta(minutes=1), T)
    cpu(make_pod(node, "web-2", deployment="web"), 75, T - timedelta(minutes=1), T)
    cpu(make_pod(node, "api-1", deployment="api"), 50, T - timedelta(minutes=1), T)
    run_cycle(T)
    (instance,) = rule.instances.all()
    assert instance.labels["deployment"] == "web" and instance.value == pytest.approx(85)
    assert "pod" not in instance.labels


def test_pod_phase_and_readiness_rules_read_the_inventory(rules_cleared):
    phase = AlertRule.objects.create(name="NotRunning", metric="pod_phase_not_running", comparison=">",
                                     threshold=0, for_duration=timedelta(0), summary="{entity} is {reason}")
    ready = AlertRule.objects.create(name="NotReady", metric="pod_not_ready", comparison=">", threshold=0,
                                     for_duration=timedelta(0))
    node = make_node()
    make_pod(node, "pending", phase="Pending", ready=False)
    make_pod(node, "done", phase="Succeeded", ready=False)
    make_pod(node, "unready", phase="Running", ready=False)
    make_pod(node, "fine", phase="Running", ready=True)
    make_pod(node, "gone", phase="Failed", ready=False, last_seen=T - timedelta(hours=1))
    run_cycle(T)
    assert states(phase) == [("pending", "firing")]
    assert phase.instances.get().labels["reason"] == "Pending"
    assert phase.instances.get().annotations["summary"] == "shop/pending is Pending"
    assert states(ready) == [("pending", "firing"), ("unready", "firing")]


def test_a_node_not_reporting_fires_after_three_missed_intervals_and_resolves_when_it_reports(rules_cleared):
    rule = AlertRule.objects.create(name="NodeDown", metric="node_not_reporting", level="node",
                                    comparison=">=", threshold=3, for_duration=timedelta(0), severity="critical")
    node = make_node(last_seen=T)
    make_node("old", last_seen=T - timedelta(days=3))  # long gone: not alerted on
    run_cycle(T + timedelta(seconds=29))
    assert not rule.instances.exists()
    run_cycle(T + timedelta(seconds=30))
    assert states(rule) == [("worker-1", "firing")]
    node.last_seen = T + timedelta(seconds=60)
    node.save()
    run_cycle(T + timedelta(seconds=61))
    assert states(rule) == [("worker-1", "resolved")]


def test_rules_needing_data_not_stored_yet_say_so_and_raise_nothing(rules_cleared, monkeypatch):
    # Every catalogue metric is evaluated today; the mechanism stays for the next one.
    assert not any(m.needs for m in METRICS.values())
    monkeypatch.setitem(METRICS, "kv_cache_percent", Metric("kv_cache_percent", "KV cache %", "%",
                                                            ("model_server", "pod"), needs="serving data"))
    rule = AlertRule.objects.create(name="KV", metric="kv_cache_percent", level="model_server", comparison=">",
                                    threshold=90)
    result = run_cycle(T)
    rule.refresh_from_db()
    assert rule.last_error == "Needs serving data; not evaluated until it is stored." and result.rules == 0
    assert not AlertInstance.objects.exists()


def test_a_disabled_rule_resolves_its_alerts(rules_cleared):
    rule = cpu_rule(for_duration=timedelta(0))
    cpu(make_pod(make_node(), "web-1"), 95, T - timedelta(minutes=1), T + timedelta(minutes=2))
    run_cycle(T)
    rule.enabled = False
    rule.save()
    run_cycle(T + timedelta(seconds=30))
    assert states(rule) == [("web-1", "resolved")]


def test_a_level_the_metric_does_not_have_is_refused(db):
    rule = AlertRule(name="x", metric="node_not_reporting", level="pod")
    with pytest.raises(ValidationError) as error:
        rule.full_clean()
    assert "level" in error.value.message_dict


@pytest.mark.parametrize("key", sorted(k for k, m in METRICS.items() if m.build is not None))
def test_every_metric_query_runs_at_every_level_it_offers(rules_cleared, key):
    node = make_node()
    cpu(make_pod(node, "web-1", deployment="web"), 95, T - timedelta(minutes=1), T)
    for level in METRICS[key].levels:
        AlertRule.objects.create(name=f"{key}-{level}", metric=key, level=level, comparison=">=", threshold=0,
                                 for_duration=timedelta(0), namespace="shop" if level != "node" else "",
                                 pod_labels={} if level == "node" else {})
    result = run_cycle(T)
    assert result.errors == {}
    assert result.rules == len(METRICS[key].levels)


@pytest.mark.parametrize("key", sorted(k for k, m in METRICS.items() if m.build is not None))
def test_the_shared_per_pod_sums_give_what_each_rule_computes_alone(rules_cleared, key):
    from django.db import transaction

    from metrics.alerts.evaluate import query_rule, shared_sums

    node = make_node()
    cpu(make_pod(node, "web-1", deployment="web"), 95, T - timedelta(minutes=5), T)
    cpu(make_pod(node, "web-2", deployment="web", cpu_limit=2.0), 40, T - timedelta(minutes=3), T)
    cpu(make_pod(node, "db-1", namespace="ops", cpu_limit=None), 40, T - timedelta(minutes=1), T)
    rules = [AlertRule.objects.create(name=f"{level}-{minutes}", metric=key, level=level, threshold=0,
                                      window=timedelta(minutes=minutes))
             for level in METRICS[key].levels for minutes in (1, 4)]
    with transaction.atomic():
        sums = shared_sums(rules, T)
        for rule in rules:
            alone = query_rule(rule, T)
            assert rounded(alone) == rounded(query_rule(rule, T, sums)), rule.name
            if pod_ratio(METRICS[key], rule.level) and key in ("cpu_percent_of_limit", "cpu_percent_of_node",
                                                              "memory_percent_of_limit", "memory_percent_of_node"):
                assert [row for row in alone if row[-1] is not None], rule.name  # compared something


def rounded(rows):
    return sorted((tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows), key=str)


def test_the_evaluatealerts_command_runs_a_cycle_and_logs_it(rules_cleared, caplog):
    from django.core.management import call_command

    cpu_rule(for_duration=timedelta(0))
    cpu(make_pod(make_node(), "web-1"), 95, T - timedelta(minutes=1), T)
    with caplog.at_level("INFO", logger="metrics.alerts"):
        call_command("evaluatealerts")
    assert "evaluatealerts: 1 rules in" in caplog.text


def test_gpu_rules_read_the_gpu_devices_samples(rules_cleared):
    from metrics.models import GpuDevice, GpuSample

    util = AlertRule.objects.create(name="GPUBusy", metric="gpu_utilization_percent", level="gpu", comparison=">",
                                    threshold=90, for_duration=timedelta(0), summary="{entity} {value:.0f}%")
    memory = AlertRule.objects.create(name="GPUMemory", metric="gpu_memory_percent", level="gpu", comparison=">",
                                      threshold=80, for_duration=timedelta(0))
    node = make_node()
    pod = make_pod(node, "trainer", namespace="ml")
    busy, idle = (GpuDevice.objects.create(node=node, uuid=f"GPU-{i}", index=i, name="NVIDIA H100",
                                           memory_total_bytes=80 * 2**30, first_seen=T, last_seen=T) for i in (0, 1))
    for k in range(6):
        t = T - timedelta(seconds=60 - 10 * k)
        GpuSample.objects.create(time=t, interval_seconds=10, device=busy, node=node, gpu_utilization_percent=97,
                                 gpu_memory_bytes=72 * 2**30, gpu_memory_total_bytes=80 * 2**30, pod=pod,
                                 namespace="ml", pod_name="trainer")
        GpuSample.objects.create(time=t, interval_seconds=10, device=idle, node=node, gpu_utilization_percent=3,
                                 gpu_memory_bytes=2**30, gpu_memory_total_bytes=80 * 2**30)
    run_cycle(T)
    (alert,) = util.instances.all()
    assert alert.labels == {"alertname": "GPUBusy", "severity": "warning", "namespace": "ml", "pod": "trainer",
                            "node": "worker-1", "gpu": "GPU-0"}
    assert alert.annotations["summary"] == "worker-1/GPU-0 97%"
    (alert,) = memory.instances.all()
    assert alert.value == pytest.approx(90) and alert.labels["gpu"] == "GPU-0"
