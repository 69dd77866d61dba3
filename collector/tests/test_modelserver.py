"""Model servers: recognised from the pod list, confirmed and measured over real HTTP on loopback.

The stand-ins answer with recorded-format /metrics text of vLLM 0.11, vLLM 0.8 (the deprecated
cache and per-token metrics) and SGLang (collector/tests/fixtures/serving); expected.json says what
each step of their scripted workload really was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from collector.sources import modelserver as ms
from collector.sources.podmeta import ContainerSpec, PodMeta, parse_pod_list
from collector.tests.servingstandin import FIXTURES, FLAVOURS, StandIn, states

PODLIST = (Path(__file__).parent / "fixtures" / "api" / "pods-gpu-worker.json").read_bytes()
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def fetch_fast(ip: str, port: int) -> str:
    # The real client over real HTTP, with a shorter bound so the timeout test is quick.
    return ms.http_get(ip, port, timeout=0.5)


def close_enough(actual: object, expected: object) -> bool:
    if expected is None:
        return actual is None
    assert isinstance(actual, (int, float)) and isinstance(expected, (int, float)), (actual, expected)
    return abs(actual - expected) <= 1e-9 * max(1.0, abs(expected))


def assert_step(serving: dict, flavour: str, step: int) -> None:
    expected = EXPECTED[flavour]["steps"][step]
    for key, value in expected.items():
        if key == "restarted":
            assert serving.get("restarted", False) is value
        elif value is not None:
            assert close_enough(serving[key], value), (flavour, step, key, serving.get(key), value)
        else:
            assert key not in serving, key


@pytest.fixture
def stand_ins() -> Iterator[dict[str, StandIn]]:
    servers = {flavour: StandIn(states(flavour)) for flavour in FLAVOURS}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.close()


def server_pod(flavour: str, port: int) -> PodMeta:
    image = {"vllm": "vllm/vllm-openai:v0.11.0", "vllm-old": "vllm/vllm-openai:v0.8.5",
             "sglang": "lmsysorg/sglang:v0.5.4"}[flavour]
    return PodMeta(uid=f"uid-{flavour}", name=f"{flavour}-0", namespace="llm", pod_ip="127.0.0.1",
                   specs=(ContainerSpec("server", image, ports=(("http", port),)),))


# --- which pods ---------------------------------------------------------------------------------


def test_the_pod_list_carries_ip_images_commands_args_and_declared_ports() -> None:
    pods = {m.name: m for m in parse_pod_list(PODLIST).values()}
    decode = pods["llama-decode-6d5f8b7c9-qk2lm"]
    assert decode.pod_ip == "10.244.3.41"
    assert decode.specs[0].image == "vllm/vllm-openai:v0.11.0"
    assert decode.specs[0].args[:2] == ("--model", "meta-llama/Llama-3.1-8B-Instruct")
    assert decode.specs[0].ports == (("http", 8000), ("nixl", 5557))
    assert pods["sglang-llama-0"].specs[0].command == ("python3", "-m", "sglang.launch_server")


def test_servers_are_recognised_by_image_command_or_label_and_ports_chosen() -> None:
    found = {m.name: ms.classify(m) for m in parse_pod_list(PODLIST).values()}
    decode = found["llama-decode-6d5f8b7c9-qk2lm"]
    assert decode is not None and (decode.kind, decode.ip, decode.ports) == ("vllm", "10.244.3.41", (8000,))
    qwen = found["qwen-chat-7d9c6b5f4-x8p2r"]  # `vllm serve` in another image, --port=9000
    assert qwen is not None and (qwen.kind, qwen.ports) == ("vllm", (9000, 8000))
    sglang = found["sglang-llama-0"]  # no declared port: its --port, SGLang's default
    assert sglang is not None and (sglang.kind, sglang.ports) == ("sglang", (30000,))
    kserve = found["llama-predictor-5b8f9d7c6-h4t9w"]  # only the KServe label says it
    assert kserve is not None and kserve.kind is None
    assert kserve.ports == (8080, 8022, 9091, 8000, 30000)
    assert found["web-7c9f8d6b5-x2x7q"] is None  # port 8000 alone says nothing


def test_a_pod_without_an_ip_yet_is_not_scraped() -> None:
    pod = replace(server_pod("vllm", 8000), pod_ip=None)
    assert ms.classify(pod) is None


# --- what they serve ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_recorded_text_gives_kind_model_and_gauges(flavour: str) -> None:
    reading = ms.parse_metrics((FIXTURES / flavour / "1.txt").read_text())
    assert reading.kind == ("sglang" if flavour == "sglang" else "vllm")
    assert reading.model_name == EXPECTED[flavour]["model_name"]
    step = EXPECTED[flavour]["steps"][0]
    assert reading.gauges["requests_running"] == step["requests_running"]
    assert reading.gauges["requests_waiting"] == step["requests_waiting"]
    assert close_enough(reading.gauges["kv_cache_usage"] * 100, step["kv_cache_usage_percent"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_usage_between_readings_is_what_happened_including_a_restart(flavour: str) -> None:
    readings = [ms.parse_metrics(text) for text in states(flavour)]
    for step in range(4):
        assert_step(ms.serving_usage(readings[step], readings[step + 1]), flavour, step)


def test_the_deprecated_vllm_names_are_read_only_when_the_new_ones_are_absent() -> None:
    text = (FIXTURES / "vllm" / "1.txt").read_text()
    both = text + 'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.99\n'
    assert ms.parse_metrics(both).gauges["kv_cache_usage"] == ms.parse_metrics(text).gauges["kv_cache_usage"]
    old = ms.parse_metrics((FIXTURES / "vllm-old" / "1.txt").read_text())
    assert "kv_cache_usage" in old.gauges and "itl" in old.histograms


def test_text_without_model_server_metrics_is_not_a_server() -> None:
    with pytest.raises(ms.NotAModelServer):
        ms.parse_metrics('# TYPE http_requests_total counter\nhttp_requests_total{code="200"} 3\n')


def test_two_engines_are_summed_and_their_cache_usage_averaged() -> None:
    text = (
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 5.0\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2\n'
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6\n'
        'vllm:generation_tokens_total{engine="0",model_name="m"} 10.0\n'
        'vllm:generation_tokens_total{engine="1",model_name="m"} 32.0\n'
    )
    reading = ms.parse_metrics(text)
    assert reading.gauges["requests_running"] == 8.0
    assert reading.gauges["kv_cache_usage"] == pytest.approx(0.4)
    assert reading.counters["generation_tokens"] == 42.0


def test_label_values_with_spaces_and_braces_parse() -> None:
    text = 'vllm:num_requests_waiting{model_name="my model {v2}",engine="0"} 7.0\n'
    reading = ms.parse_metrics(text)
    assert reading.model_name == "my model {v2}" and reading.gauges["requests_waiting"] == 7.0


@pytest.mark.parametrize(("q", "expected"), [
    (0.5, 0.15),  # rank 5 of 10 is the 3rd of the 6 in (0.1, 0.2]: 0.1 + 0.1 * 3 / 6
    (0.95, 0.5),  # rank 9.5 lies in +Inf: the highest finite bound
])
def test_quantiles_interpolate_in_bucket_deltas_like_prometheus(q: float, expected: float) -> None:
    buckets = ((0.1, 2.0), (0.2, 8.0), (0.5, 9.0), (float("inf"), 10.0))
    assert ms.histogram_quantile(q, buckets) == pytest.approx(expected)


def test_an_empty_histogram_has_no_quantile() -> None:
    assert ms.histogram_quantile(0.5, ((0.1, 0.0), (float("inf"), 0.0))) is None


# --- scraping over HTTP -------------------------------------------------------------------------


def cycle(servers: ms.ModelServers, tick: float, pods: list[PodMeta]) -> tuple[dict, dict | None]:
    servers.submit(tick, pods)
    return servers.harvest(tick)


def test_stand_ins_are_confirmed_then_measured_each_cycle(stand_ins: dict[str, StandIn]) -> None:
    pods = [server_pod(flavour, server.port) for flavour, server in stand_ins.items()]
    servers = ms.ModelServers(fetch=fetch_fast, grace=2.0)
    try:
        fields, status = cycle(servers, 1000.0, pods)  # first reading: confirms and primes
        assert status is not None and status["ok"] and status["error"] is None
        assert 0 <= status["seconds"] <= 2.0  # the wait for answers, bounded by the grace
        for flavour in FLAVOURS:
            row = fields[f"uid-{flavour}"]
            assert row == {"model_server": "sglang" if flavour == "sglang" else "vllm",
                           "model_name": EXPECTED[flavour]["model_name"]}
        for step in range(4):
            fields, status = cycle(servers, 1010.0 + 10 * step, pods)
            for flavour in FLAVOURS:
                serving = fields[f"uid-{flavour}"]["serving"]
                assert serving["interval_seconds"] == 10.0
                assert_step(serving, flavour, step)
    finally:
        servers.close()


def test_a_scrape_timeout_is_reported_once_never_holds_the_cycle_and_loses_no_tokens(
    stand_ins: dict[str, StandIn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "collector.modelserver")
    server = stand_ins["vllm"]
    pod = server_pod("vllm", server.port)
    servers = ms.ModelServers(fetch=fetch_fast, grace=0.1)
    try:
        cycle(servers, 1000.0, [pod])  # primes on state 0 (waits up to the grace)
        time.sleep(0.05)
        server.slow_next = 1.5
        started = time.monotonic()
        fields, status = cycle(servers, 1010.0, [pod])
        assert time.monotonic() - started < 0.5  # the cycle went on without the answer
        assert "serving" not in fields["uid-vllm"]
        time.sleep(0.6)  # past the 0.5 s bound: the scrape has failed
        fields, status = cycle(servers, 1020.0, [pod])
        # The failure is reported in this cycle's batch; the scrape sent again at once answered
        # (state 1), and its usage covers the 20 s since state 0: no token lost.
        assert status is not None and status["ok"] is False
        assert "TimeoutError" in status["error"] and "llm/vllm-0 (127.0.0.1:" in status["error"]
        serving = fields["uid-vllm"]["serving"]
        assert serving["interval_seconds"] == 20.0
        assert_step(serving, "vllm", 0)
        time.sleep(0.05)
        fields, status = cycle(servers, 1030.0, [pod])
        assert status is not None and status["ok"] and status["error"] is None
        assert fields["uid-vllm"]["serving"]["interval_seconds"] == 10.0
        assert_step(fields["uid-vllm"]["serving"], "vllm", 1)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "vllm-0" in warnings[0].getMessage()
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        servers.close()


def test_a_late_answer_is_used_in_the_next_cycle(stand_ins: dict[str, StandIn]) -> None:
    server = stand_ins["sglang"]
    pod = server_pod("sglang", server.port)
    slow = {"calls": 0}

    def fetch_late_once(ip: str, port: int) -> str:
        slow["calls"] += 1
        if slow["calls"] == 2:
            time.sleep(0.3)  # longer than the grace, within the timeout
        return ms.http_get(ip, port, timeout=2.0)

    servers = ms.ModelServers(fetch=fetch_late_once, grace=0.1)
    try:
        cycle(servers, 1000.0, [pod])
        fields, _ = cycle(servers, 1010.0, [pod])
        assert "serving" not in fields["uid-sglang"]
        time.sleep(0.4)
        fields, _ = cycle(servers, 1020.0, [pod])  # the late answer (state 1) stands for 1020
        assert fields["uid-sglang"]["serving"]["interval_seconds"] == 20.0
        assert_step(fields["uid-sglang"]["serving"], "sglang", 0)
    finally:
        servers.close()


def test_a_label_only_candidate_tries_its_ports_until_one_speaks_vllm(stand_ins: dict[str, StandIn]) -> None:
    other = StandIn(["# TYPE up gauge\nup 1\n"])
    try:
        pod = PodMeta(uid="uid-ks", name="predictor", namespace="ks", pod_ip="127.0.0.1",
                      labels={"serving.kserve.io/inferenceservice": "llama"},
                      specs=(ContainerSpec("kserve-container", "kserve/huggingfaceserver:v0.15.0",
                                           ports=(("user", other.port), ("h2c", stand_ins["vllm"].port))),))
        servers = ms.ModelServers(fetch=fetch_fast, grace=2.0)
        try:
            fields, status = cycle(servers, 1000.0, [pod])
            assert "uid-ks" not in fields and status is not None and status["ok"]
            fields, status = cycle(servers, 1010.0, [pod])
            assert fields["uid-ks"]["model_server"] == "vllm"
        finally:
            servers.close()
    finally:
        other.close()


def test_a_refused_connection_is_a_failing_endpoint(stand_ins: dict[str, StandIn]) -> None:
    port = stand_ins["vllm"].port
    stand_ins["vllm"].close()
    servers = ms.ModelServers(fetch=fetch_fast, grace=2.0)
    try:
        fields, status = cycle(servers, 1000.0, [server_pod("vllm", port)])
        assert fields == {} and status is not None and status["ok"] is False
        assert "1 of 1 endpoints failed" in status["error"]
    finally:
        servers.close()
        stand_ins["vllm"] = StandIn(states("vllm"))


def test_a_label_only_pod_without_metrics_is_no_failure_and_is_asked_again_later() -> None:
    # Nothing listens on these ports: a KServe predictor that serves no language model.
    closed = [StandIn(["x"]) for _ in range(2)]
    ports = []
    for server in closed:
        ports.append(server.port)
        server.close()
    now = [1000.0]
    pod = PodMeta(uid="uid-sk", name="sklearn", namespace="ks", pod_ip="127.0.0.1",
                  labels={"serving.kserve.io/inferenceservice": "iris"},
                  specs=(ContainerSpec("kserve-container", "kserve/sklearnserver:v0.15.0",
                                       ports=(("a", ports[0]), ("b", ports[1]))),))
    servers = ms.ModelServers(fetch=fetch_fast, grace=2.0, clock=lambda: now[0])
    try:
        asked = []
        for tick in range(8):
            now[0] += 10.0
            servers.submit(now[0], [pod])
            asked.append(servers.targets["uid-sk"].future is not None)
            fields, status = servers.harvest(now[0])
            assert fields == {} and status is not None and status["ok"], status
        # Its two ports, then vLLM's and SGLang's defaults, once each; then quiet for 5 minutes.
        assert asked == [True, True, True, True, False, False, False, False]
    finally:
        servers.close()
