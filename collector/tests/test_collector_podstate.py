"""Pod state and spec (phase, readiness, requests, container states) from a recorded pod list,
through the batch the collector sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixture_node import FIXTURES, FixtureNode, RecordedApi, batch_between
from layouts import V1, to_v2
from test_collector_golden import contract_errors

from collector.sources.podmeta import ApiServerSource, Metadata, parse_pod_list, parse_quantity

FAILING = (FIXTURES / "api/pods-worker-1-failing.json").read_bytes()
HEALTHY = (FIXTURES / "api/pods-worker-1.json").read_bytes()


@pytest.mark.parametrize(("text", "value"), [
    ("250m", 0.25), ("1", 1.0), ("1.5", 1.5), ("500000n", 0.0005), ("64Mi", 64 * 2**20),
    ("1Gi", 2**30), ("2G", 2e9), ("128974848", 128974848.0), ("1e3", 1000.0), ("12k", 12000.0),
])
def test_it_reads_kubernetes_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "-1", "1Qi", None, True])
def test_it_gives_no_value_for_a_malformed_quantity(text: Any) -> None:
    assert parse_quantity(text) is None


def by_name(text: bytes) -> dict[str, Any]:
    return {meta.name: meta for meta in parse_pod_list(text).values()}


def test_a_running_ready_pod_has_its_phase_readiness_and_summed_requests() -> None:
    web = by_name(HEALTHY)["web-7c9f8d6b5-x2x7q"]
    assert (web.phase, web.ready) == ("Running", True)
    # app asks for 100m and 64Mi; the proxy sidecar asks for nothing.
    assert (web.cpu_request_cores, web.memory_request_bytes) == (0.1, 64 * 2**20)
    app = web.container_states["app"]
    assert (app.ready, app.state, app.state_reason) == (True, "running", None)
    assert (app.cpu_request_cores, app.memory_request_bytes) == (0.1, 64 * 2**20)
    assert web.container_states["proxy"].cpu_request_cores is None


def test_a_pod_without_any_request_has_unknown_requests() -> None:
    batch = by_name(HEALTHY)["batch-29412345-8kq2d"]
    assert (batch.cpu_request_cores, batch.memory_request_bytes) == (None, None)


def test_a_crash_looping_container_and_an_oom_killed_one_are_read_with_their_reasons() -> None:
    pods = by_name(FAILING)
    web = pods["web-7c9f8d6b5-x2x7q"]
    assert web.ready is False and web.phase == "Running"
    app = web.container_states["app"]
    assert (app.ready, app.state, app.state_reason) == (False, "waiting", "CrashLoopBackOff")
    assert app.last_termination_reason == "Error"
    worker = pods["batch-29412345-8kq2d"].container_states["worker"]
    assert (worker.state, worker.last_termination_reason) == ("running", "OOMKilled")
    assert worker.last_termination_time == "2026-11-22T22:31:39Z"


def failing_batch(tmp_path: Path, monkeypatch: Any, podlist: bytes = FAILING) -> dict[str, Any]:
    t0 = to_v2(V1 / "t0", tmp_path / "v2" / "t0")
    t1 = to_v2(V1 / "t1", tmp_path / "v2" / "t1")
    api = RecordedApi({"/api/v1/pods": (200, podlist)})
    try:
        node = FixtureNode(tmp_path / "node", monkeypatch)
        meta = Metadata([ApiServerSource("worker-1", base_url=api.url, token_path="")])
        return batch_between(node, t0, t1, meta.get, meta.refresh)
    finally:
        api.close()


def test_the_batch_carries_the_pod_and_container_states_in_the_contract(tmp_path: Path, monkeypatch: Any) -> None:
    batch = failing_batch(tmp_path, monkeypatch)
    assert contract_errors(batch) == []
    pods = {p["name"]: p for p in batch["pods"]}
    web = pods["web-7c9f8d6b5-x2x7q"]
    assert (web["phase"], web["ready"], web["cpu_request_cores"]) == ("Running", False, 0.1)
    app = {c["name"]: c for c in web["containers"]}["app"]
    assert (app["state"], app["state_reason"], app["ready"]) == ("waiting", "CrashLoopBackOff", False)
    worker = {c["name"]: c for c in pods["batch-29412345-8kq2d"]["containers"]}["worker"]
    assert worker["last_termination_reason"] == "OOMKilled"
    assert worker["last_termination_time"] == "2026-11-22T22:31:39Z"
    assert "state_reason" not in worker  # running: no reason, and null keys are left out
