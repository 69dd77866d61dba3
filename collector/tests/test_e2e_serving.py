"""End to end for model serving: stand-in vLLM / SGLang servers -> collector -> API -> storage ->
/api/model-servers/, with real HTTP everywhere (loopback).

The collector's real agent (`python -m collector`, 2 s interval) reads the captured cgroup v1
node from the fixtures and takes its pod list from a stand-in kubelet's /pods, in which the
node's three pods are a vLLM 0.11 Deployment replica (by image), an SGLang Job pod (by command)
and a KServe predictor (by label only) serving vLLM 0.8 text. Each stand-in serves its recorded
states in order (one per answered scrape), with a server restart between states 2 and 3, and the
vLLM one answers its third scrape too late (3 s, past the 2 s bound). What the API then serves must
be exactly what the stand-ins' workload produced (collector/tests/fixtures/serving/expected.json).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import Client

from collector.tests.fixture_node import FIXTURES
from collector.tests.servingstandin import FIXTURES as SERVING, StandIn, states
from collector.tests.test_e2e_api import REPO, ApiServer, produced_batches
from metrics.models import ApiToken, Node, NodeSample, Pod, ServingSample
from metrics.tests.factories import reset_rollups
from metrics.tokens import create_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

INTERVAL = 2.0
BATCHES = 9
EXPECTED = json.loads((SERVING / "expected.json").read_text())
PODLIST = json.loads((FIXTURES / "api" / "pods-worker-1.json").read_text())


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path / "api.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def stand_ins() -> Iterator[dict[str, StandIn]]:
    servers = {flavour: StandIn(states(flavour)) for flavour in ("vllm", "vllm-old", "sglang")}
    servers["vllm"].slow_requests = {3}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.close()


def model_server_pod_list(ports: dict[str, int]) -> bytes:
    """The captured node's pods (pods-worker-1.json), turned into model servers on 127.0.0.1."""
    data = json.loads(json.dumps(PODLIST))
    for item in data["items"]:
        item["status"]["podIP"] = "127.0.0.1"
        spec = item["spec"]
        first = spec["containers"][0]
        name = item["metadata"]["name"]
        if name.startswith("web-"):  # a vLLM Deployment replica, by its image
            first.update(image="vllm/vllm-openai:v0.11.0", args=["--model", "meta-llama/Llama-3.1-8B-Instruct"],
                         ports=[{"name": "http", "containerPort": ports["vllm"], "protocol": "TCP"}])
        elif name.startswith("batch-"):  # SGLang, by its command line
            first.update(image="registry.example.com/ml/runtime:1", command=["python3", "-m", "sglang.launch_server"],
                         args=["--model-path", "meta-llama/Llama-3.1-8B-Instruct", "--port", str(ports["sglang"]),
                               "--enable-metrics"])
        else:  # a KServe predictor: only its label says it serves a model
            item["metadata"]["labels"]["serving.kserve.io/inferenceservice"] = "qwen"
            first.update(image="kserve/huggingfaceserver:v0.15.0-gpu",
                         ports=[{"name": "h2c", "containerPort": ports["vllm-old"], "protocol": "TCP"}])
    return json.dumps(data).encode()


class Kubelet:
    """GET /pods as the kubelet answers it (a PodList), on loopback."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200 if self.path == "/pods" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if self.path == "/pods":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def expected_totals(flavour: str, served: list[int]) -> dict[str, float]:
    """Usage over every step between the first and the last state the collector was given."""
    steps = EXPECTED[flavour]["steps"][: max(served)]
    return {key: math.fsum(s[key] for s in steps) for key in ("generation_tokens", "prompt_tokens", "ttft_count", "ttft_seconds_sum")}


def test_the_api_serves_exactly_the_tokens_and_latency_the_servers_produced(
    api: ApiServer, stand_ins: dict[str, StandIn], tmp_path: Path
) -> None:
    # The series come from the rollup views: an earlier test's refresh (its watermark) must not
    # hide this test's fresh samples.
    reset_rollups()
    node_name = "e2e-serving"
    _, token = create_token(node_name)
    kubelet = Kubelet(model_server_pod_list({f: s.port for f, s in stand_ins.items()}))
    tree = FIXTURES / "v1-cgroupfs" / "t1"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KUBEMONITOR_") and k not in ("NODE_NAME", "KUBERNETES_SERVICE_HOST")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "collector", "--api-url", api.url, "--token", token,
             "--interval", str(INTERVAL), "--node-name", node_name, "--spool-dir", str(tmp_path / "spool"),
             "--proc-root", str(tree / "proc"), "--sys-root", str(tree / "sys"),
             "--pod-log-dir", str(tree / "var" / "log" / "pods"), "--metadata", "kubelet",
             "--kubelet-url", kubelet.url, "--count", str(BATCHES), "--log-level", "DEBUG"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )
    finally:
        kubelet.close()
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert len(produced_batches(log)) == BATCHES
    assert NodeSample.objects.filter(node__name=node_name).count() == BATCHES

    # The late answer: reported once, in the log and in collector.sources of that batch.
    timeouts = [line for line in log.splitlines() if "WARNING" in line and "model server" in line]
    assert len(timeouts) == 1 and "web-7c9f8d6b5-x2x7q" in timeouts[0], log[-3000:]
    assert "answers again" in log
    assert stand_ins["vllm"].requests > len(stand_ins["vllm"].served)  # one request went unanswered

    node = Node.objects.get(name=node_name)
    pods = {p.name: p for p in Pod.objects.filter(node=node)}
    kinds = {name: (p.model_server, p.model_name) for name, p in pods.items()}
    assert kinds == {
        "web-7c9f8d6b5-x2x7q": ("vllm", EXPECTED["vllm"]["model_name"]),
        "batch-29412345-8kq2d": ("sglang", EXPECTED["sglang"]["model_name"]),
        "agent-5lmzt": ("vllm", EXPECTED["vllm-old"]["model_name"]),
    }

    reader = Client(HTTP_AUTHORIZATION=f"Bearer {create_token('reader', ApiToken.Scope.READ)[1]}")
    rows = {(r["namespace"], r["name"]): r for r in reader.get("/api/model-servers/").json()["results"]}
    assert set(rows) == {("shop", "web"), ("data", "batch-29412345-8kq2d"), ("kube-system", "agent-5lmzt")}
    for (namespace, name), flavour in (
        (("shop", "web"), "vllm"), (("data", "batch-29412345-8kq2d"), "sglang"), (("kube-system", "agent-5lmzt"), "vllm-old"),
    ):
        pod = pods["web-7c9f8d6b5-x2x7q" if name == "web" else name]
        samples = list(ServingSample.objects.filter(pod=pod).order_by("time"))
        served = stand_ins[flavour].served
        assert served == list(range(len(served))) or served[:5] == [0, 1, 2, 3, 4], served
        # Every stored interval is exactly one step of the workload, in order, restart included.
        with_traffic = [s for s in samples if s.ttft_count]
        assert len(with_traffic) == min(max(served), 4), (flavour, served, len(samples))
        for sample, step in zip(with_traffic, EXPECTED[flavour]["steps"]):
            assert sample.generation_tokens == step["generation_tokens"]
            assert sample.prompt_tokens == step["prompt_tokens"]
            assert sample.requests_succeeded == step["requests_succeeded"]
            assert sample.ttft_count == step["ttft_count"]
            assert sample.ttft_seconds_sum == pytest.approx(step["ttft_seconds_sum"], rel=1e-12)
            for q in ("p50", "p95"):
                for h in ("ttft", "itl", "e2e"):
                    assert getattr(sample, f"{h}_{q}_seconds") == pytest.approx(step[f"{h}_{q}_seconds"], rel=1e-12)
            assert sample.restarted is step["restarted"]
            assert sample.kv_cache_usage_percent == pytest.approx(step["kv_cache_usage_percent"], rel=1e-12)
        # The vLLM sample after the late answer covers every tick it waited for.
        if flavour == "vllm":
            assert any(s.interval_seconds > INTERVAL for s in samples), [s.interval_seconds for s in samples]

        # The API: newest figures and the series, exactly those sums.
        row = rows[(namespace, name)]
        newest = samples[-1]
        assert row["model_server"] == ("sglang" if flavour == "sglang" else "vllm")
        assert row["latest"]["generation_tokens_per_second"] == newest.generation_tokens / newest.interval_seconds
        kind = "" if name == "web" else "?kind=pod&"
        detail = reader.get(f"/api/model-servers/{namespace}/{name}/{kind or '?'}window=900&step=60").json()
        points = [p for p in detail["series"]["points"] if p["coverage"]]
        totals = expected_totals(flavour, served)
        assert math.fsum(p["generation_tokens"] for p in points) == totals["generation_tokens"]
        assert math.fsum(p["prompt_tokens"] for p in points) == totals["prompt_tokens"]
        for p in points:
            # A rate is the bucket's sum over the seconds reported in it (coverage x step).
            assert p["generation_tokens_per_second"] == pytest.approx(
                p["generation_tokens"] / (p["coverage"] * 60), rel=1e-9
            )
        # TTFT over the whole window from the per-point means and their counts: exact.
        ttft_total = math.fsum(
            s.ttft_seconds_sum for s in samples if s.ttft_seconds_sum is not None
        )
        assert ttft_total == pytest.approx(totals["ttft_seconds_sum"], rel=1e-12)
    assert all(s.time + timedelta(seconds=s.interval_seconds) <= max(
        n.time + timedelta(seconds=n.interval_seconds) for n in NodeSample.objects.filter(node=node))
        for s in ServingSample.objects.all())
