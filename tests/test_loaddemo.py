"""`manage.py loaddemo`: synthetic batches stored through the ingest path, idempotently."""

from __future__ import annotations

from importlib import import_module
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection

from metrics.alerts.models import AlertInstance
from metrics.models import Container, GpuDevice, Node, NodeSample, Pod, PodSample

pytestmark = pytest.mark.django_db(transaction=True)


def loaddemo(*args: str) -> str:
    out = StringIO()
    call_command("loaddemo", *args, stdout=out)
    return out.getvalue()


def test_it_stores_one_batch_per_node_per_interval_with_every_workload() -> None:
    out = loaddemo("--hours", "1", "--nodes", "2", "--interval", "60", "--no-refresh")
    assert "120 batches stored, 0 already there" in out
    assert set(Node.objects.values_list("name", flat=True)) == {"demo-node-1", "demo-node-2"}
    assert NodeSample.objects.count() == 120
    namespaces = set(Pod.objects.values_list("namespace", flat=True))
    assert namespaces == {"shop", "data", "kube-system", "kubemonitor", "ml"}
    assert set(Pod.objects.exclude(deployment=None).values_list("deployment", flat=True)) == {
        "frontend", "cart", "checkout", "etl", "coredns", "vllm"
    }
    # 12 replicas, a bare SGLang pod, and one collector per node; the frontend pods have two containers.
    assert Pod.objects.count() == 15
    assert Container.objects.count() == 18
    assert PodSample.objects.count() == 15 * 60


def test_the_first_node_has_two_gpus_and_the_model_server_holds_one() -> None:
    loaddemo("--hours", "0.5", "--nodes", "2", "--no-refresh")
    devices = GpuDevice.objects.select_related("node").order_by("index")
    assert [(d.node.name, d.index, d.name) for d in devices] == [
        ("demo-node-1", 0, "NVIDIA L4"), ("demo-node-1", 1, "NVIDIA L4")
    ]
    vllm = Pod.objects.get(deployment="vllm")
    assert vllm.node.name == "demo-node-1"
    busy = PodSample.objects.filter(pod=vllm).values_list("gpu_utilization_percent", flat=True)
    assert busy and all(0 < u <= 100 for u in busy)


def test_it_shows_its_progress_while_it_loads() -> None:
    out = loaddemo("--hours", "1", "--nodes", "1", "--interval", "60", "--no-refresh")
    lines = out.splitlines()
    assert lines[0] == "loaddemo: 60 intervals x 1 nodes to store (14 pods)"
    progress = [line for line in lines if line.endswith(" intervals)")]
    assert progress == [f"loaddemo: {p} % ({p * 60 // 100}/60 intervals)" for p in range(10, 100, 10)]
    assert lines.index(progress[-1]) < lines.index(next(line for line in lines if "batches stored" in line))


def test_a_rerun_stores_nothing_twice() -> None:
    loaddemo("--hours", "0.5", "--nodes", "1", "--no-refresh")
    samples = PodSample.objects.count()
    out = loaddemo("--hours", "0.5", "--nodes", "1", "--no-refresh")
    # The newest interval may have ended between the two runs; everything older is a duplicate.
    assert "already there" in out
    assert PodSample.objects.count() - samples <= len(Pod.objects.all())


def test_usage_is_plausible_and_within_limits() -> None:
    loaddemo("--hours", "1", "--nodes", "1", "--no-refresh")
    frontend = PodSample.objects.filter(pod__name__startswith="frontend-")
    assert frontend.exists()
    for sample in frontend:
        cores = sample.cpu_seconds / sample.interval_seconds
        assert 0.1 < cores <= 1.0
        assert 100 * 2**20 < sample.memory_working_set_bytes <= 512 * 2**20


def test_it_refreshes_the_rollups_so_namespace_series_have_data() -> None:
    loaddemo("--hours", "0.5", "--nodes", "1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), sum(cpu_seconds) FROM metrics_rollup_namespace_1m WHERE namespace = 'shop'")
        buckets, cpu = cursor.fetchone()
    assert buckets >= 25
    assert cpu > 0


def test_it_refuses_a_window_beyond_raw_retention() -> None:
    with pytest.raises(CommandError, match="raw retention"):
        loaddemo("--hours", str(24 * 365))


def test_it_evaluates_the_alert_rules_over_the_demo_so_alerts_fire_and_resolve() -> None:
    # The default rules come from a data migration, which an earlier transactional test's flush empties.
    import_module("metrics.migrations.0008_alerts").install_default_rules(django_apps, None)
    out = loaddemo("--hours", "3", "--nodes", "1", "--no-refresh")
    # The vLLM GPU stays above 90 %: firing since the first cycles. Every 3 hours each cart
    # replica is OOM-killed at its memory peak: fired, and resolved 10 minutes later.
    states = set(AlertInstance.objects.values_list("rule__name", "state"))
    assert ("PodGPUUtilisationHigh", "firing") in states
    assert ("ContainerOOMKilled", "resolved") in states
    assert "alert rules evaluated every 5 minutes" in out
