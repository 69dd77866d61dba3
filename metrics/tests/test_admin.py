"""The admin: every page answers, sample pages never COUNT or scan, tokens are created and revoked."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from metrics.tests import alert_helpers
from metrics.models import (
    ApiToken,
    Container,
    ContainerSample,
    GpuDevice,
    GpuSample,
    NodeSample,
    PodSample,
    RollupPoisonedBucket,
    ServingSample,
)
from metrics.tests.read_helpers import make_node, make_pod, node_rows, pod_rows
from metrics.tokens import create_token, lookup_token

SAMPLE_TABLES = (
    "metrics_nodesample", "metrics_podsample", "metrics_containersample", "metrics_gpusample",
    "metrics_servingsample",
)


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    # Deployments serve the hashed names collectstatic wrote; tests have no collectstatic run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def staff(db) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data(db):
    now = timezone.now()
    node = make_node("node-a.example.com")
    pod = make_pod("web-1", "shop", node, deployment="web")
    container = Container.objects.create(
        pod=pod, name="app", container_id="containerd://abc", image="web:1", first_seen=now, last_seen=now
    )
    pod_rows(pod, now - timedelta(minutes=10), now, 10)
    node_rows(node, now - timedelta(minutes=10), now, 10)
    ContainerSample.objects.create(
        container=container, pod=pod, time=now - timedelta(seconds=10), interval_seconds=10,
        cpu_seconds=0.5, memory_working_set_bytes=10**8,
    )
    pod.model_server, pod.model_name = "vllm", "meta-llama/Llama-3.1-8B-Instruct"
    pod.save()
    ServingSample.objects.create(
        pod=pod, node=node, time=now - timedelta(seconds=10), interval_seconds=10, namespace="shop",
        deployment="web", model_server="vllm", model_name=pod.model_name, generation_tokens=1200,
    )
    gpu = GpuDevice.objects.create(
        node=node, uuid="GPU-8a6a3c1e-4f2b-9d7e-1c5a-3b9e7f2d6a40", index=0, name="NVIDIA H100 80GB HBM3",
        memory_total_bytes=80 * 2**30, mig_mode="disabled", driver_version="550.54.15",
        first_seen=now, last_seen=now,
    )
    GpuSample.objects.create(
        device=gpu, node=node, time=now - timedelta(seconds=10), interval_seconds=10, gpu_utilization_percent=91.5,
        gpu_memory_bytes=70 * 2**30, gpu_power_watts=512.3, gpu_temperature_celsius=61, pod=pod, namespace="shop",
        pod_name="web-1", container="app",
    )
    create_token("collector-1")
    alert_helpers.admin_rows()
    RollupPoisonedBucket.objects.create(
        resolution="1m", entity="namespace", bucket=now.replace(second=0, microsecond=0),
        error="value out of range: overflow", recorded_at=now,
    )
    return {"node": node, "pod": pod, "container": container, "gpu": gpu}


def _counts_over_samples(queries) -> list[str]:
    found = []
    for q in queries.captured_queries:
        sql = q["sql"].lower()
        touches = any(t in sql for t in SAMPLE_TABLES)
        if touches and (re.search(r"\bcount\(", sql) or "distinct" in sql):
            found.append(q["sql"])
    return found


def _models():
    return [m for m in admin.site._registry if m._meta.app_label == "metrics"]


def test_every_model_is_registered():
    from django.apps import apps

    assert set(_models()) == set(apps.get_app_config("metrics").get_models())


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_changelist_and_change_page_answers_without_counting_samples(staff, data, model):
    info = (model._meta.app_label, model._meta.model_name)
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse("admin:%s_%s_changelist" % info))
        assert response.status_code == 200
        obj = model.objects.order_by("-pk").first()
        assert obj is not None
        response = staff.get(reverse("admin:%s_%s_change" % info, args=[obj.pk]))
        assert response.status_code == 200
    assert _counts_over_samples(queries) == []


@pytest.mark.parametrize("model", [NodeSample, PodSample, ContainerSample, ServingSample], ids=lambda m: m.__name__)
def test_sample_filters_search_and_dates_never_count_or_scan(staff, data, model):
    url = reverse(f"admin:metrics_{model._meta.model_name}_changelist")
    now = timezone.localtime()
    params = [
        *([{"model_server": "vllm"}] if model is ServingSample else []),
        {"node": data["node"].pk},
        {"namespace": "shop"},
        {"deployment": "shop/web"},
        {"q": "web"},
        {"q": "node-a"},
        {"time__year": now.year},
        {"time__year": now.year, "time__month": now.month},
        {"time__year": now.year, "time__month": now.month, "time__day": now.day},
    ]
    for p in params:
        if model is NodeSample and set(p) & {"namespace", "deployment"}:
            continue
        with CaptureQueriesContext(connection) as queries:
            response = staff.get(url, p)
        assert response.status_code == 200, p
        assert b"errornote" not in response.content, p
        assert _counts_over_samples(queries) == [], p
        misses = (model is NodeSample and p.get("q") == "web") or (
            model in (ContainerSample, ServingSample) and p.get("q") == "node-a"
        )
        assert (response.context["cl"].result_count == 0) == misses, p
    response = staff.get(url, {"q": "nothing-like-this"})
    assert response.context["cl"].result_count == 0


@pytest.mark.parametrize("model", [PodSample, ContainerSample], ids=lambda m: m.__name__)
@pytest.mark.parametrize("param", ["node", "namespace", "deployment"])
def test_a_filter_value_with_a_null_character_matches_nothing(staff, data, model, param):
    url = reverse(f"admin:metrics_{model._meta.model_name}_changelist")
    response = staff.get(url, {param: "shop\x00"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


@pytest.mark.parametrize("model", [NodeSample, PodSample, ContainerSample], ids=lambda m: m.__name__)
def test_a_node_filter_that_is_not_an_id_matches_nothing(staff, data, model):
    url = reverse(f"admin:metrics_{model._meta.model_name}_changelist")
    response = staff.get(url, {"node": "node-a"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


def test_sample_pages_are_read_only(staff, data):
    sample = PodSample.objects.first()
    url = reverse("admin:metrics_podsample_change", args=[sample.pk])
    assert staff.post(url, {"cpu_seconds": "99"}).status_code == 403
    assert staff.get(reverse("admin:metrics_podsample_add")).status_code == 403
    assert staff.get(reverse("admin:metrics_podsample_delete", args=[sample.pk])).status_code == 403


def test_the_pod_sample_list_shows_the_newest_first(staff, data):
    response = staff.get(reverse("admin:metrics_podsample_changelist"))
    rows = response.context["cl"].result_list
    times = [r.time for r in rows]
    assert times == sorted(times, reverse=True)
    assert response.context["cl"].result_count == PodSample.objects.count()


def test_adding_a_token_shows_its_plaintext_once(staff, db):
    response = staff.post(
        reverse("admin:metrics_apitoken_add"), {"name": "reader-1", "scope": "read"}, follow=True
    )
    assert response.status_code == 200
    text = " ".join(str(m) for m in response.context["messages"])
    plaintext = re.search(r"km_\w+_[\w-]+", text).group(0)
    token = lookup_token(plaintext)
    assert token is not None and token.name == "reader-1" and token.scope == "read"
    page = staff.get(reverse("admin:metrics_apitoken_change", args=[token.pk])).content.decode()
    assert plaintext not in page
    assert token.digest not in page


def test_a_token_added_in_the_admin_may_be_bound_to_a_cluster(staff, db):
    from metrics.models import Cluster

    cluster = Cluster.objects.create(name="prod-eu")
    response = staff.post(
        reverse("admin:metrics_apitoken_add"),
        {"name": "eu-collectors", "scope": "ingest", "cluster": cluster.pk}, follow=True,
    )
    assert response.status_code == 200
    plaintext = re.search(r"km_\w+_[\w-]+", " ".join(str(m) for m in response.context["messages"])).group(0)
    token = lookup_token(plaintext)
    assert token is not None and token.cluster_id == cluster.pk


def test_the_revoke_action_revokes_tokens(staff, db):
    token, plaintext = create_token("collector-2")
    response = staff.post(
        reverse("admin:metrics_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked is not None
    assert lookup_token(plaintext) is None
    assert ApiToken.objects.filter(revoked__isnull=True).count() == 0


def test_the_revoke_action_says_the_token_is_refused_at_once(staff, db):
    token, _ = create_token("collector-3")
    response = staff.post(
        reverse("admin:metrics_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Ingest and reads refuse them from the next request on" in response.content.decode()


def test_gpu_sample_filters_search_and_dates_never_count_or_scan(staff, data):
    url = reverse("admin:metrics_gpusample_changelist")
    now = timezone.localtime()
    for p, found in [
        ({"node": data["node"].pk}, 1), ({"model": "NVIDIA H100 80GB HBM3"}, 1), ({"model": "Tesla T4"}, 0),
        ({"shared__exact": "1"}, 0), ({"q": "GPU-8a6a"}, 1), ({"q": "node-a"}, 1), ({"q": "web-1"}, 1),
        ({"q": "nothing"}, 0), ({"time__year": now.year, "time__month": now.month, "time__day": now.day}, 1),
    ]:
        with CaptureQueriesContext(connection) as queries:
            response = staff.get(url, p)
        assert response.status_code == 200, p
        assert b"errornote" not in response.content, p
        assert _counts_over_samples(queries) == [], p
        assert response.context["cl"].result_count == found, p


@pytest.mark.parametrize(
    "model, entity", [(NodeSample, "node"), (PodSample, "pod"), (ContainerSample, "container")]
)
def test_sample_lists_show_the_catalogue_columns(staff, data, model, entity):
    from metrics import catalogue

    fields = catalogue.sample_fields(entity)
    assert {"cpu_seconds", "psi_cpu_some_seconds", "gpu_utilization_percent"} <= set(fields)
    response = staff.get(reverse(f"admin:metrics_{model._meta.model_name}_changelist"))
    assert response.status_code == 200
    for name in fields:
        assert f"column-{name}" in response.content.decode(), name
