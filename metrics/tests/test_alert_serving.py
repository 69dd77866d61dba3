"""Model-server rules (KV cache %, TTFT p95) evaluated over the stored serving samples, per pod
and per model server (a serving Deployment or a standalone pod), with their selectors."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from metrics.alerts.catalogue import METRICS
from metrics.alerts.evaluate import run_cycle
from metrics.alerts.models import AlertInstance, AlertRule
from metrics.models import Node, Pod, ServingSample
from metrics.tests.alert_helpers import BASE, INTERVAL, make_node, make_pod

pytestmark = pytest.mark.django_db

T = BASE


@pytest.fixture
def rules_cleared(db):
    AlertRule.objects.all().delete()  # the default rules would alert on the test data too


def server_pod(name: str, kind: str = "vllm", deployment: str | None = "llama", node: str = "worker-1",
               labels: dict[str, str] | None = None) -> Pod:
    pod = make_pod(Node.objects.filter(name=node).first() or make_node(node), name, namespace="ai",
                   deployment=deployment, labels=labels)
    pod.model_server = kind
    pod.save()
    return pod


def serve(pod: Pod, start: datetime, end: datetime, *, kv: float | None = None,
          ttft_p95: float | None = None) -> None:
    """Serving samples every INTERVAL seconds in [start, end)."""
    rows = []
    t = start
    while t < end:
        rows.append(ServingSample(
            time=t, interval_seconds=INTERVAL, pod=pod, node_id=pod.node_id, namespace=pod.namespace,
            deployment=pod.deployment, model_server=pod.model_server or "vllm", kv_cache_usage_percent=kv,
            ttft_p95_seconds=ttft_p95, ttft_seconds_sum=None if ttft_p95 is None else ttft_p95 / 2,
            ttft_count=None if ttft_p95 is None else 1,
        ))
        t += timedelta(seconds=INTERVAL)
    ServingSample.objects.bulk_create(rows)


def kv_rule(**kwargs) -> AlertRule:
    fields = dict(name="KVCacheFull", metric="kv_cache_percent", level="model_server", comparison=">",
                  threshold=90, for_duration=timedelta(minutes=2), window=timedelta(minutes=1),
                  summary="{entity}: KV cache {value:.0f}%", description="{model_server} {pod}")
    fields.update(kwargs)
    return AlertRule.objects.create(**fields)


def active(rule: AlertRule) -> list[tuple[str, str, float]]:
    return sorted((i.annotations.get("summary", ""), i.state, round(i.value, 3))
                  for i in rule.instances.all())


def test_kv_cache_and_ttft_are_evaluated_now_that_serving_samples_are_stored():
    assert METRICS["kv_cache_percent"].build is not None and not METRICS["kv_cache_percent"].needs
    assert METRICS["ttft_p95_seconds"].build is not None and "upper bound" in METRICS["ttft_p95_seconds"].label


def test_a_full_kv_cache_fires_per_model_server_after_for_and_resolves(rules_cleared):
    rule = kv_rule()
    a, b = server_pod("llama-a"), server_pod("llama-b")
    # Replicas at 95 % and 91 %: the server's time-weighted mean is 93 %.
    serve(a, T - timedelta(minutes=1), T + timedelta(minutes=3), kv=95.0)
    serve(b, T - timedelta(minutes=1), T + timedelta(minutes=3), kv=91.0)
    run_cycle(T)
    assert active(rule) == [("ai/llama: KV cache 93%", "pending", 93.0)]
    instance = rule.instances.get()
    assert instance.labels["deployment"] == "llama" and instance.labels["model_server"] == "vllm"
    assert "pod" not in instance.labels
    run_cycle(T + timedelta(minutes=1, seconds=59))
    assert rule.instances.get().state == "pending"
    run_cycle(T + timedelta(minutes=2))
    assert rule.instances.get().state == "firing"
    # The cache drains: the window's mean drops below the threshold and the alert resolves.
    serve(a, T + timedelta(minutes=3), T + timedelta(minutes=5), kv=20.0)
    serve(b, T + timedelta(minutes=3), T + timedelta(minutes=5), kv=20.0)
    run_cycle(T + timedelta(minutes=4, seconds=30))
    assert [i.state for i in rule.instances.all()] == ["resolved"]


def test_the_kv_cache_mean_is_weighted_by_time_across_the_window(rules_cleared):
    rule = kv_rule(level="pod", threshold=50, for_duration=timedelta(0))
    pod = server_pod("solo", deployment=None)
    serve(pod, T - timedelta(minutes=1), T - timedelta(seconds=30), kv=100.0)
    serve(pod, T - timedelta(seconds=30), T, kv=10.0)  # half the window each: mean 55 %
    ServingSample.objects.create(time=T - timedelta(seconds=5), interval_seconds=0.0, pod=pod,
                                 node_id=pod.node_id, namespace="ai", model_server="vllm",
                                 kv_cache_usage_percent=None)  # unknown values count for nothing
    run_cycle(T)
    assert active(rule) == [("ai/solo: KV cache 55%", "firing", 55.0)]


def test_a_standalone_serving_pod_is_its_own_model_server(rules_cleared):
    rule = kv_rule(for_duration=timedelta(0))
    pod = server_pod("bert", kind="sglang", deployment=None)
    serve(pod, T - timedelta(minutes=1), T, kv=99.0)
    run_cycle(T)
    instance = rule.instances.get()
    assert instance.labels == {"namespace": "ai", "pod": "bert", "model_server": "sglang",
                               "alertname": "KVCacheFull", "severity": "warning"}
    assert instance.annotations["summary"] == "ai/bert: KV cache 99%"
    assert instance.annotations["description"] == "sglang bert"


def test_ttft_p95_takes_the_highest_interval_p95_of_the_window(rules_cleared):
    rule = AlertRule.objects.create(name="SlowFirstToken", metric="ttft_p95_seconds", level="pod", comparison=">",
                                    threshold=2.0, for_duration=timedelta(0), window=timedelta(minutes=5))
    slow, fast = server_pod("llama-a"), server_pod("llama-b")
    serve(slow, T - timedelta(minutes=5), T, ttft_p95=0.5)
    ServingSample.objects.filter(pod=slow, time=T - timedelta(minutes=3)).update(ttft_p95_seconds=None)  # no requests
    ServingSample.objects.filter(pod=slow, time=T - timedelta(minutes=2)).update(ttft_p95_seconds=3.5)
    serve(fast, T - timedelta(minutes=5), T, ttft_p95=0.4)
    serve(fast, T - timedelta(minutes=6), T - timedelta(minutes=5), ttft_p95=9.0)  # outside the window
    run_cycle(T)
    assert [(i.labels["pod"], i.value) for i in rule.instances.all()] == [("llama-a", 3.5)]
    # Once the slow interval leaves the window the alert resolves.
    run_cycle(T + timedelta(minutes=3, seconds=1))
    assert [i.state for i in rule.instances.all()] == ["resolved"]


def test_the_model_server_kind_selector_keeps_only_that_kind(rules_cleared):
    rule = kv_rule(model_server_kind="sglang", for_duration=timedelta(0))
    vllm = server_pod("llama-a", kind="vllm", deployment="llama")
    sglang = server_pod("qwen-a", kind="sglang", deployment="qwen")
    serve(vllm, T - timedelta(minutes=1), T, kv=99.0)
    serve(sglang, T - timedelta(minutes=1), T, kv=97.0)
    run_cycle(T)
    assert [(i.labels["deployment"], i.labels["model_server"]) for i in rule.instances.all()] == [("qwen", "sglang")]


def test_namespace_deployment_node_and_label_selectors_apply_to_serving_rules(rules_cleared):
    a = server_pod("llama-a", deployment="llama", labels={"tier": "gold"})
    b = server_pod("qwen-a", deployment="qwen", node="worker-2")
    for pod in (a, b):
        serve(pod, T - timedelta(minutes=1), T, kv=99.0)
    selectors = {"ns": dict(namespace="other"), "dep": dict(deployment="qwen"), "node": dict(node="worker-2"),
                 "label": dict(pod_labels={"tier": "gold"})}
    rules = {key: kv_rule(name=f"KV-{key}", level="pod", for_duration=timedelta(0), **sel)
             for key, sel in selectors.items()}
    run_cycle(T)
    pods = {key: sorted(i.labels["pod"] for i in rule.instances.all()) for key, rule in rules.items()}
    assert pods == {"ns": [], "dep": ["qwen-a"], "node": ["qwen-a"], "label": ["llama-a"]}


def test_a_serving_rule_is_one_query(rules_cleared, django_assert_max_num_queries):
    kv_rule(for_duration=timedelta(0))
    for n in range(5):
        serve(server_pod(f"llama-{n}"), T - timedelta(minutes=1), T, kv=99.0)
    from metrics.alerts.evaluate import query_rule

    rule = AlertRule.objects.get()
    with django_assert_max_num_queries(1):
        rows = query_rule(rule, T)
    assert len(rows) == 1 and AlertInstance.objects.count() == 0
