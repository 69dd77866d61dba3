"""Model serving on the server: the ingest contract's serving blocks, what they store, and the
read API (?model_server= on pods and Deployments, /api/model-servers/ and its series)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from metrics.models import ApiToken, NodeSample, Pod, PodSample, ServingSample
from metrics.tests.factories import NodeBatches, tick
from metrics.tests.ingest_helpers import post
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db

SERVING = {
    "requests_running": 4.0, "requests_waiting": 1.0, "kv_cache_usage_percent": 42.5,
    "prompt_tokens": 5120, "generation_tokens": 1830, "requests_succeeded": 12, "preemptions": 1,
    "ttft_seconds_sum": 3.6, "ttft_count": 12, "ttft_p50_seconds": 0.18, "ttft_p95_seconds": 0.7,
    "itl_seconds_sum": 1.5, "itl_count": 60, "itl_p50_seconds": 0.02, "itl_p95_seconds": 0.04,
    "e2e_seconds_sum": 60.0, "e2e_count": 12, "e2e_p50_seconds": 4.5, "e2e_p95_seconds": 9.0,
}


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def serving_batch(end, pods: int = 3, seed: int = 1, **serving: Any) -> dict[str, Any]:
    """Pod 0: a vLLM Deployment replica, pod 1: a standalone SGLang pod, others: plain pods."""
    batch = NodeBatches("gpu-1", pods=pods, seed=seed).batch(end)
    vllm, sglang = batch["pods"][0], batch["pods"][1]
    vllm.update(deployment="llama", model_server="vllm", model_name="meta-llama/Llama-3.1-8B-Instruct",
                serving={**SERVING, **serving})
    sglang.update(deployment=None, owner_kind="StatefulSet", owner_name="sg", model_server="sglang",
                  model_name="Qwen/Qwen2.5-7B-Instruct",
                  serving={**SERVING, "generation_tokens": 500, "preemptions": None, **serving})
    return batch


def test_it_stores_a_serving_sample_per_model_server_pod_with_the_interval_start(client, ingest_token):
    end = tick(60)
    response = post(client, ingest_token, serving_batch(end))
    assert response.status_code == 201, response.content
    rows = {r.model_server: r for r in ServingSample.objects.all()}
    assert set(rows) == {"vllm", "sglang"}
    vllm = rows["vllm"]
    assert vllm.time == end - timedelta(seconds=10) and vllm.interval_seconds == 10.0
    assert (vllm.generation_tokens, vllm.prompt_tokens, vllm.ttft_count) == (1830, 5120, 12)
    assert vllm.deployment == "llama" and vllm.model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert rows["sglang"].preemptions is None and rows["sglang"].restarted is False
    pods = {p.model_server: p for p in Pod.objects.exclude(model_server=None)}
    assert pods["vllm"].model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert Pod.objects.filter(model_server=None).count() == 1


def test_a_late_scrape_covers_its_own_longer_interval(client, ingest_token):
    end = tick(60)
    assert post(client, ingest_token, serving_batch(end, interval_seconds=30.0)).status_code == 201
    sample = ServingSample.objects.get(model_server="vllm")
    assert sample.interval_seconds == 30.0 and sample.time == end - timedelta(seconds=30)


def test_a_batch_without_model_fields_keeps_what_the_inventory_knows(client, ingest_token):
    first = serving_batch(tick(60))
    assert post(client, ingest_token, first).status_code == 201
    later = NodeBatches("gpu-1", pods=3, seed=1).batch(tick(40))
    later["pods"][0]["deployment"] = "llama"
    assert post(client, ingest_token, later).status_code == 201
    assert Pod.objects.get(uid=first["pods"][0]["uid"]).model_server == "vllm"


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"serving": {"tokens": 3}}, "pods[0].serving.tokens", "Unknown field."),
    ({"serving": {"kv_cache_usage_percent": 150.0}}, "pods[0].serving.kv_cache_usage_percent", "less than or equal to 100"),
    ({"serving": {"generation_tokens": -1}}, "pods[0].serving.generation_tokens", "greater than or equal to 0"),
    ({"serving": {"generation_tokens": 1.5}}, "pods[0].serving.generation_tokens", "Expected an integer."),
    ({"model_server": "tgi"}, "pods[0].model_server", "'vllm' or 'sglang'"),
    ({"model_server": None}, "pods[0].serving", "Needs model_server"),
    ({"model_name": ""}, "pods[0].model_name", "at least 1 character"),
    # Finite but impossible: one such sum would overflow every rollup of its bucket.
    ({"serving": {"ttft_seconds_sum": 1e308}}, "pods[0].serving.ttft_seconds_sum", "more than physically possible"),
    ({"serving": {"generation_tokens": 2**62}}, "pods[0].serving.generation_tokens", "more than physically possible"),
])
def test_bad_serving_input_is_a_400_naming_the_field_and_stores_nothing(
    client, ingest_token, change: dict[str, Any], field: str, message: str
):
    batch = serving_batch(tick(60))
    pod = batch["pods"][0]
    for key, value in change.items():
        if key == "serving":
            pod["serving"].update(value)
        else:
            pod[key] = value
    response = post(client, ingest_token, batch)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors and message in " ".join(errors[field]), errors
    assert not NodeSample.objects.exists() and not ServingSample.objects.exists()


def test_an_overlapping_serving_sample_rolls_the_whole_batch_back(client, ingest_token):
    end = tick(60)
    assert post(client, ingest_token, serving_batch(end)).status_code == 201
    # The next batch's serving block claims 20 s: it starts where the stored one does.
    again = serving_batch(end + timedelta(seconds=10), interval_seconds=20.0)
    response = post(client, ingest_token, again)
    assert response.status_code == 400
    assert "pods[0].serving" in response.json()["errors"] or "pods[1].serving" in response.json()["errors"]
    assert NodeSample.objects.count() == 1 and PodSample.objects.count() == 3
    assert ServingSample.objects.count() == 2


# --- read API -----------------------------------------------------------------------------------


@pytest.fixture
def served(client, ingest_token) -> dict[str, Any]:
    batches = [serving_batch(tick(40 - 10 * i), generation_tokens=1000 + 100 * i) for i in range(3)]
    for b in batches:
        assert post(client, ingest_token, b).status_code == 201
    return {"batches": batches}


def test_pods_and_deployments_filter_by_model_server(reader, served):
    pods = reader.get("/api/pods/?model_server=vllm").json()["results"]
    assert [(p["model_server"], p["model_name"]) for p in pods] == [("vllm", "meta-llama/Llama-3.1-8B-Instruct")]
    deployments = reader.get("/api/deployments/?model_server=vllm").json()["results"]
    assert [d["name"] for d in deployments] == ["llama"]
    assert reader.get("/api/deployments/?model_server=sglang").json()["results"] == []
    for url in ("/api/pods/?model_server=tgi", "/api/deployments/?model_server=tgi",
                "/api/model-servers/?model_server=tgi"):
        response = reader.get(url)
        assert response.status_code == 400 and "model_server" in response.json(), url


def test_model_servers_list_one_row_per_deployment_or_standalone_pod(reader, served):
    rows = reader.get("/api/model-servers/").json()["results"]
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == {"deployment", "pod"}
    llama = by_kind["deployment"]
    assert (llama["name"], llama["model_server"], llama["replicas"]) == ("llama", "vllm", 1)
    latest = llama["latest"]
    # The newest interval: 1200 output tokens over 10 s.
    assert latest["generation_tokens_per_second"] == 120.0
    assert latest["prompt_tokens_per_second"] == 512.0
    assert latest["ttft_mean_seconds"] == pytest.approx(0.3) and latest["ttft_p95_seconds"] == 0.7
    assert (latest["requests_running"], latest["requests_waiting"], latest["kv_cache_usage_percent"]) == (4.0, 1.0, 42.5)
    standalone = by_kind["pod"]
    assert standalone["model_server"] == "sglang" and standalone["url"].endswith("?kind=pod")
    assert reader.get("/api/model-servers/?model_server=sglang").json()["results"][0]["kind"] == "pod"


def test_a_model_servers_series_sums_tokens_exactly(reader, served):
    namespace = served["batches"][0]["pods"][0]["namespace"]
    body = reader.get(f"/api/model-servers/{namespace}/llama/?window=600&step=60").json()
    assert body["series"]["source"] == "1m"
    points = [p for p in body["series"]["points"] if p["replicas"]]
    assert sum(p["generation_tokens"] for p in points) == pytest.approx(1000 + 1100 + 1200)
    assert sum(p["requests_succeeded"] for p in points) == pytest.approx(36)
    for p in points:
        # A rate over the seconds the replica's node reported in the bucket (coverage says how
        # much of it that is).
        assert p["generation_tokens_per_second"] == pytest.approx(p["generation_tokens"] / (60 * p["coverage"]))
        assert p["ttft_mean_seconds"] == pytest.approx(0.3)


def test_a_standalone_pod_is_found_by_name_and_a_missing_server_is_a_404(reader, served):
    pod = served["batches"][0]["pods"][1]
    body = reader.get(f"/api/model-servers/{pod['namespace']}/{pod['name']}/?kind=pod").json()
    assert body["kind"] == "pod" and body["model_name"] == "Qwen/Qwen2.5-7B-Instruct"
    assert reader.get(f"/api/model-servers/{pod['namespace']}/nothing/").status_code == 404
    assert reader.get(f"/api/model-servers/{pod['namespace']}/llama/?kind=job").status_code == 400

