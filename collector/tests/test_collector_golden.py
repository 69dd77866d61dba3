"""End to end over fixture trees: prime on one captured instant, report on the next, compare the
batch with a golden file, and hold the golden files to the ingest contract's keys.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fixture_node import FIXTURES, GOLDEN, FixtureNode, RecordedApi, batch_between, normalise
from layouts import V1, to_v2

from collector.sources.podmeta import ApiServerSource, Metadata, PodLogsSource

# The ingest contract (docs/api.md), key by key.
TOP_REQUIRED = {"node", "time", "interval_seconds", "node_usage", "pods"}
TOP_OPTIONAL = {"collector", "warnings"}
PSI_GPU = {"psi_cpu_some_seconds", "psi_memory_some_seconds", "psi_memory_full_seconds",
           "psi_io_some_seconds", "psi_io_full_seconds", "gpu_utilization_percent",
           "gpu_memory_bytes"}
NET_EXTRA = {"net_rx_packets", "net_tx_packets", "net_rx_errors", "net_tx_errors",
             "net_rx_dropped", "net_tx_dropped"}
NODE_REQUIRED = {"cpu_seconds", "cpu_capacity_cores", "memory_working_set_bytes",
                 "memory_total_bytes", "memory_available_bytes", "disk_read_bytes",
                 "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "fs_used_bytes",
                 "fs_capacity_bytes"}
NODE_OPTIONAL = {"memory_rss_bytes", "memory_cache_bytes", "disk_read_ops", "disk_write_ops",
                 *NET_EXTRA, *PSI_GPU}
POD_REQUIRED = {"uid", "name", "namespace", "owner_kind", "owner_name", "deployment", "qos",
                "labels", "cpu_seconds", "memory_working_set_bytes", "disk_read_bytes",
                "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "cpu_limit_cores",
                "memory_limit_bytes", "containers"}
THROTTLE = {"cpu_throttled_seconds", "cpu_throttled_periods", "cpu_periods", "oom_kills"}
POD_OPTIONAL = {"interval_seconds", "host_network", "memory_rss_bytes", "memory_cache_bytes",
                "fs_used_bytes", "disk_read_ops", "disk_write_ops", *NET_EXTRA, *THROTTLE,
                *PSI_GPU, "phase", "ready", "cpu_request_cores", "memory_request_bytes"}
CONTAINER_REQUIRED = {"name", "id", "image", "cpu_seconds", "memory_working_set_bytes",
                      "disk_read_bytes", "disk_write_bytes"}
CONTAINER_OPTIONAL = {"interval_seconds", "memory_rss_bytes", "memory_cache_bytes",
                      "disk_read_ops", "disk_write_ops", *THROTTLE, *PSI_GPU, "cpu_limit_cores",
                      "memory_limit_bytes", "restarts", "ready", "state", "state_reason",
                      "last_termination_reason", "last_termination_time", "cpu_request_cores",
                      "memory_request_bytes"}
COLLECTOR_KEYS = {"version", "cgroup_version", "cgroup_driver", "cycle_cpu_seconds", "sources"}


def contract_errors(batch: dict[str, Any]) -> list[str]:
    errors: list[str] = []

    def check(obj: dict[str, Any], required: set[str], optional: set[str], path: str) -> None:
        for key in required - obj.keys():
            errors.append(f"{path}{key}: missing")
        for key in obj.keys() - required - optional:
            errors.append(f"{path}{key}: not in the contract")
        for key, value in obj.items():
            if isinstance(value, float) and (value != value or value < 0):
                errors.append(f"{path}{key}: {value}")
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                errors.append(f"{path}{key}: negative")

    check(batch, TOP_REQUIRED, TOP_OPTIONAL, "")
    check(batch["node_usage"], NODE_REQUIRED, NODE_OPTIONAL, "node_usage.")
    if "collector" in batch:
        check(batch["collector"], set(), COLLECTOR_KEYS, "collector.")
    for i, pod in enumerate(batch["pods"]):
        check(pod, POD_REQUIRED, POD_OPTIONAL, f"pods[{i}].")
        for j, c in enumerate(pod["containers"]):
            check(c, CONTAINER_REQUIRED, CONTAINER_OPTIONAL, f"pods[{i}].containers[{j}].")
    return errors


def compare_with_golden(batch: dict[str, Any], name: str) -> None:
    path = GOLDEN / name
    batch = normalise(batch)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(batch, indent=2, sort_keys=True) + "\n")
    golden = json.loads(path.read_text())
    assert batch == golden


def podlogs_metadata(node: FixtureNode) -> Metadata:
    return Metadata([PodLogsSource(node.roots)])


def test_a_v1_cgroupfs_node_gives_the_golden_batch(tmp_path: Path, monkeypatch: Any) -> None:
    node = FixtureNode(tmp_path / "node", monkeypatch)
    meta = podlogs_metadata(node)
    batch = batch_between(node, V1 / "t0", V1 / "t1", meta.get, meta.refresh)
    compare_with_golden(batch, "v1-cgroupfs-podlogs.json")


def test_a_v2_systemd_node_with_the_api_server_gives_the_golden_batch(
        tmp_path: Path, monkeypatch: Any) -> None:
    t0 = to_v2(V1 / "t0", tmp_path / "v2" / "t0")
    t1 = to_v2(V1 / "t1", tmp_path / "v2" / "t1")
    api = RecordedApi({"/api/v1/pods": (200, (FIXTURES / "api/pods-worker-1.json").read_bytes())})
    try:
        node = FixtureNode(tmp_path / "node", monkeypatch)
        meta = Metadata([ApiServerSource("worker-1", base_url=api.url, token_path="")])
        batch = batch_between(node, t0, t1, meta.get, meta.refresh)
    finally:
        api.close()
    compare_with_golden(batch, "v2-systemd-apiserver.json")


@pytest.mark.parametrize("name", ["v1-cgroupfs-podlogs.json", "v2-systemd-apiserver.json"])
def test_the_golden_batches_hold_to_the_ingest_contract(name: str) -> None:
    batch = json.loads((GOLDEN / name).read_text())
    assert contract_errors(batch) == []
    assert batch["pods"], "a golden batch without pods proves nothing"


@pytest.mark.parametrize("name", ["v1-cgroupfs-podlogs.json", "v2-systemd-apiserver.json"])
def test_the_server_schema_accepts_the_golden_batches(name: str) -> None:
    schema = pytest.importorskip("metrics.ingest.schema")
    body = (GOLDEN / name).read_bytes()
    end = datetime.fromisoformat(json.loads(body)["time"].replace("Z", "+00:00"))
    try:
        schema.parse_batch(body, end + timedelta(seconds=1), timedelta(days=36500))
    except schema.BatchInvalid as exc:
        pytest.fail(f"the server refuses the golden batch: {exc.errors}")


def test_the_contract_check_catches_an_unknown_key() -> None:
    batch = json.loads((GOLDEN / "v1-cgroupfs-podlogs.json").read_text())
    batch["pods"][0]["containers"][0]["net_rx_bytes"] = 1
    del batch["node_usage"]["fs_used_bytes"]
    assert contract_errors(batch) == ["node_usage.fs_used_bytes: missing",
                                      "pods[0].containers[0].net_rx_bytes: not in the contract"]


def test_the_golden_time_is_rfc3339_utc() -> None:
    batch = json.loads((GOLDEN / "v1-cgroupfs-podlogs.json").read_text())
    parsed = datetime.fromisoformat(batch["time"].replace("Z", "+00:00"))
    assert parsed.tzinfo == timezone.utc and parsed.timestamp() % 10 == 0
