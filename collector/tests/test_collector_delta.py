"""Usage over an interval from two snapshots: resets, priming, vanished pods, the blkio quirk."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from fixture_node import FixtureNode, batch_between
from layouts import FIXTURES, V1

from collector.delta import UNKNOWN_NAMESPACE, build_batch, counter_delta
from collector.snapshot import BLKIO_WARNING
from collector.sources.podmeta import PodMeta

PODS = [line.split() for line in (V1 / "pods.txt").read_text().splitlines()]
WEB, BATCH, AGENT, GONE = (PODS[0][2], PODS[3][2], PODS[6][2], PODS[8][2])
IDS = {row[4]: row[5] for row in PODS}
CG = V1 / "t0/sys/fs/cgroup"


def no_meta(_uid: str) -> None:
    return None


@pytest.fixture
def snaps(tmp_path: Path, monkeypatch: Any) -> tuple[Any, Any]:
    node = FixtureNode(tmp_path / "node", monkeypatch)
    return node.take(V1 / "t0", 1_795_000_000.0), node.take(V1 / "t1", 1_795_000_010.0)


@pytest.mark.parametrize("new,old,expected", [
    (150, 100, (50, False)), (100, 100, (0, False)), (30, 100, (30, True)),
    (None, 100, (None, False)), (100, None, (None, False)),
])
def test_a_counter_that_went_down_counts_from_zero(new: Any, old: Any, expected: Any) -> None:
    assert counter_delta(new, old) == expected


def test_a_restarted_container_reports_its_new_counter_and_a_restart(snaps: Any) -> None:
    batch = build_batch(*snaps, "worker-1", no_meta, 10.0)
    pod = next(p for p in batch["pods"] if p["uid"] == BATCH)
    sidecar = next(c for c in pod["containers"] if c["id"].endswith(IDS["sidecar"]))
    path = f"kubepods/besteffort/pod{BATCH}/{IDS['sidecar']}/cpuacct.usage"
    before = int((V1 / "t0/sys/fs/cgroup/cpuacct" / path).read_text())
    after = int((V1 / "t1/sys/fs/cgroup/cpuacct" / path).read_text())
    assert after < before  # really restarted between the captures
    assert sidecar["cpu_seconds"] == pytest.approx(after / 1e9)
    assert sidecar["restarts"] == 1
    worker = next(c for c in pod["containers"] if c["id"].endswith(IDS["worker"]))
    assert "restarts" not in worker and worker["cpu_seconds"] > 0


def test_no_usage_is_ever_negative(snaps: Any) -> None:
    batch = build_batch(*snaps, "worker-1", no_meta, 10.0)
    for pod in batch["pods"]:
        for row in (pod, *pod["containers"]):
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert value >= 0, (pod["uid"], key, value)


def test_a_pod_that_vanished_is_left_out_and_a_new_pod_only_primes(snaps: Any) -> None:
    first, second = snaps
    assert GONE in first.pods and GONE not in second.pods
    batch = build_batch(first, second, "worker-1", no_meta, 10.0)
    assert {p["uid"] for p in batch["pods"]} == {WEB, BATCH, AGENT}
    del first.pods[WEB]  # as if the web pod appeared during the interval
    batch = build_batch(first, second, "worker-1", no_meta, 10.0)
    assert {p["uid"] for p in batch["pods"]} == {BATCH, AGENT}


def test_a_container_created_during_the_interval_counts_from_zero(snaps: Any) -> None:
    first, second = snaps
    first = copy.deepcopy(first)
    del first.pods[WEB].containers[IDS["proxy"]]
    batch = build_batch(first, second, "worker-1", no_meta, 10.0)
    pod = next(p for p in batch["pods"] if p["uid"] == WEB)
    proxy = next(c for c in pod["containers"] if c["id"].endswith(IDS["proxy"]))
    total = second.pods[WEB].containers[IDS["proxy"]].stats.cpu_ns / 1e9
    assert proxy["cpu_seconds"] == pytest.approx(total)
    assert "restarts" not in proxy  # no earlier container of that name


def test_the_sandbox_is_never_a_container_row(snaps: Any) -> None:
    batch = build_batch(*snaps, "worker-1", no_meta, 10.0)
    reported = {c["id"] for p in batch["pods"] for c in p["containers"]}
    sandboxes = {row[5] for row in PODS if row[4] == "POD"}
    assert not reported & sandboxes


def test_an_unreadable_sandbox_is_dropped_when_the_api_does_not_know_its_id(snaps: Any) -> None:
    first, second = snaps
    for snap in snaps:
        snap.pods[WEB].containers[PODS[0][5]].sandbox = None  # its process could not be read
    meta = PodMeta(uid=WEB, name="web-1", namespace="shop",
                   containers={IDS["app"]: ("app", "web:1"), IDS["proxy"]: ("proxy", "envoy:1")},
                   container_names=["app", "proxy"])
    batch = build_batch(first, second, "worker-1", {WEB: meta}.get, 10.0)
    pod = next(p for p in batch["pods"] if p["uid"] == WEB)
    assert [c["name"] for c in pod["containers"]] == ["app", "proxy"]


def test_a_pod_in_no_metadata_source_is_reported_by_uid(snaps: Any) -> None:
    batch = build_batch(*snaps, "worker-1", no_meta, 10.0)
    pod = next(p for p in batch["pods"] if p["uid"] == AGENT)
    assert pod["name"] == AGENT and pod["namespace"] == UNKNOWN_NAMESPACE
    assert pod["qos"] == "Guaranteed"  # from the cgroup path
    assert pod["containers"][0]["name"] == IDS["agent"][:12]


def test_a_besteffort_pod_has_no_limits(snaps: Any) -> None:
    batch = build_batch(*snaps, "worker-1", no_meta, 10.0)
    pod = next(p for p in batch["pods"] if p["uid"] == BATCH)
    assert pod["cpu_limit_cores"] is None and pod["memory_limit_bytes"] is None
    guaranteed = next(p for p in batch["pods"] if p["uid"] == AGENT)
    assert guaranteed["cpu_limit_cores"] == 1.0 and guaranteed["memory_limit_bytes"] == 512 << 20


def test_a_missed_tick_makes_a_double_interval(snaps: Any) -> None:
    first, second = snaps
    second.monotonic = first.monotonic + 20.02
    assert build_batch(first, second, "worker-1", no_meta, 10.0)["interval_seconds"] == 20.0


def test_gpu_readings_land_on_the_node_pod_and_container(snaps: Any) -> None:
    first, second = snaps
    second.gpu = {"node": {"gpu_utilization_percent": 37.5, "gpu_memory_bytes": 2 << 30},
                  "pods": {WEB: {"gpu_utilization_percent": 30.0, "gpu_memory_bytes": 1 << 30}},
                  "containers": {IDS["app"]: {"gpu_memory_bytes": 1 << 30}}}
    batch = build_batch(first, second, "worker-1", no_meta, 10.0)
    assert batch["node_usage"]["gpu_utilization_percent"] == 37.5
    pod = next(p for p in batch["pods"] if p["uid"] == WEB)
    assert pod["gpu_memory_bytes"] == 1 << 30
    app = next(c for c in pod["containers"] if c["id"].endswith(IDS["app"]))
    assert app["gpu_memory_bytes"] == 1 << 30
    assert "gpu_memory_bytes" not in next(p for p in batch["pods"] if p["uid"] == BATCH)


def _without_throttle_stats(src: Path, dst: Path) -> Path:
    """The quirk capture as a kernel >= 6.10 shows it before any throttle rule ever existed on the
    disk: every blkio.throttle statistics file holds no device lines (assembled: this machine's
    disk had blk-throttle set up by earlier runs, so the capture itself counts)."""
    shutil.copytree(src, dst, symlinks=True)
    for f in (dst / "sys/fs/cgroup/blkio").rglob("blkio.throttle.io_serv*"):
        f.write_text("Total 0\n")
    return dst


def test_the_blkio_quirk_gives_null_disk_bytes_a_warning_and_one_log_line(
        tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    quirk = FIXTURES / "v1-blkio-quirk"
    t0 = _without_throttle_stats(quirk / "t0", tmp_path / "q0")
    t1 = _without_throttle_stats(quirk / "t1", tmp_path / "q1")
    node = FixtureNode(tmp_path / "node", monkeypatch)
    with caplog.at_level(logging.INFO, logger="collector.snapshot"):
        batch = batch_between(node, t0, t1, no_meta)
        again = build_batch(node.take(t1, 1_795_000_010.0), node.take(t1, 1_795_000_020.0),
                            "worker-1", no_meta, 10.0)
    assert batch["warnings"] == [BLKIO_WARNING] and again["warnings"] == [BLKIO_WARNING]
    assert batch["node_usage"]["disk_write_bytes"] > 0  # the node's own diskstats still count
    [pod] = batch["pods"]
    assert pod["disk_read_bytes"] is None and pod["disk_write_bytes"] is None
    assert "disk_write_ops" not in pod
    assert all(c["disk_write_bytes"] is None for c in pod["containers"])
    assert len([r for r in caplog.records if "throttle statistics" in r.getMessage()]) == 1


def test_real_throttle_statistics_are_reported_as_numbers(tmp_path: Path, monkeypatch: Any) -> None:
    quirk = FIXTURES / "v1-blkio-quirk"
    node = FixtureNode(tmp_path / "node", monkeypatch)
    batch = batch_between(node, quirk / "t0", quirk / "t1", no_meta)
    assert "warnings" not in batch
    [pod] = batch["pods"]
    assert pod["disk_write_bytes"] == 8 << 20  # the 8 MiB written with O_DIRECT


def test_a_failing_source_is_reported_and_logged_once_while_the_cycle_goes_on(
        tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    from collector.sources import diskstats

    def broken(*_args: Any) -> None:
        raise ValueError("unexpected diskstats line")

    node = FixtureNode(tmp_path / "node", monkeypatch)
    monkeypatch.setattr(diskstats, "read_diskstats", broken)
    with caplog.at_level(logging.WARNING, logger="collector.sources"):
        snaps = [node.take(V1 / t, 1_795_000_000.0 + 10 * i) for i, t in enumerate(("t0", "t1", "t1"))]
    batch = build_batch(snaps[1], snaps[2], "worker-1", no_meta, 10.0)
    assert batch["collector"]["sources"]["diskstats"] == {
        "ok": False, "seconds": batch["collector"]["sources"]["diskstats"]["seconds"],
        "error": "ValueError: unexpected diskstats line"}
    assert batch["node_usage"]["disk_read_bytes"] is None
    assert batch["node_usage"]["cpu_seconds"] is not None and batch["pods"]
    assert len([r for r in caplog.records if "diskstats" in r.getMessage()]) == 1
