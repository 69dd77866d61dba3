"""Pods and containers found in the kubelet's cgroup tree, in every layout the collector supports."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fixture_node import roots_for
from layouts import V1, relayout_v1, to_v2

from collector.sources import cgroups as cg
from collector.sources.mountinfo import read_cgroup_mounts

PODS = [line.split() for line in (V1 / "pods.txt").read_text().splitlines()]
WEB, BATCH, AGENT, GONE = (PODS[0][2], PODS[3][2], PODS[6][2], PODS[8][2])
SANDBOXES = {row[5] for row in PODS if row[4] == "POD"}
WORKLOADS = {row[5]: row[4] for row in PODS if row[4] != "POD"}


def reader_for(tree: Path) -> cg.CgroupReader:
    roots = roots_for(tree)
    layout = cg.discover(roots, read_cgroup_mounts(roots))
    assert layout is not None
    return cg.CgroupReader(roots, layout)


@pytest.mark.parametrize("name,expected", [
    ("pod051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7", "051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7"),
    ("kubepods-burstable-pod051f3a5c_0d5c_411e_bd16_bd0dc14f6bb7.slice",
     "051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7"),
    ("kubepods-pod051f3a5c_0d5c_411e_bd16_bd0dc14f6bb7.slice", "051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7"),
    ("burstable", None), ("kubepods-besteffort.slice", None), ("system.slice", None),
])
def test_pod_directories_give_the_uid_in_both_drivers(name: str, expected: str | None) -> None:
    assert cg.parse_pod_dir(name) == expected


CID = "e4a610d89475eb9844291f10ef01147394c5c1a791888eb2efb927685bca1519"


@pytest.mark.parametrize("name,expected", [
    (CID, ("", CID)),
    (f"cri-containerd-{CID}.scope", ("containerd", CID)),
    (f"crio-{CID}.scope", ("cri-o", CID)),
    (f"crio-{CID}", ("cri-o", CID)),
    (f"docker-{CID}.scope", ("docker", CID)),
    (f"kubepods-burstable-pod051f3a5c_0d5c.slice:cri-containerd:{CID}", ("containerd", CID)),
    (f"crio-conmon-{CID}.scope", None),
    ("init.scope", None),
    (CID[:63], None),
])
def test_container_leaves_of_every_runtime_give_the_container_id(name: str, expected: Any) -> None:
    assert cg.parse_container_dir(name) == expected


def layouts(tmp: Path, t: str) -> dict[str, Path]:
    src = V1 / t
    return {
        "v1-cgroupfs-containerd": src,
        "v1-cgroupfs-crio": relayout_v1(src, tmp / "fs-crio" / t, "cgroupfs", "crio"),
        "v1-systemd-containerd": relayout_v1(src, tmp / "sd-ctr" / t, "systemd", "containerd"),
        "v1-systemd-crio": relayout_v1(src, tmp / "sd-crio" / t, "systemd", "crio"),
        "v1-systemd-docker": relayout_v1(src, tmp / "sd-docker" / t, "systemd", "docker"),
        "v2-systemd-containerd": to_v2(src, tmp / "v2-sd" / t, "systemd", "containerd"),
        "v2-cgroupfs-crio": to_v2(src, tmp / "v2-fs" / t, "cgroupfs", "crio"),
    }


@pytest.mark.parametrize("layout", ["v1-cgroupfs-containerd", "v1-cgroupfs-crio",
                                    "v1-systemd-containerd", "v1-systemd-crio", "v1-systemd-docker",
                                    "v2-systemd-containerd", "v2-cgroupfs-crio"])
def test_every_layout_finds_the_same_pods_qos_and_containers(tmp_path: Path, layout: str) -> None:
    tree = layouts(tmp_path, "t0")[layout]
    reader = reader_for(tree)
    assert reader.layout.driver == ("systemd" if "systemd" in layout else "cgroupfs")
    assert reader.layout.version == (2 if layout.startswith("v2") else 1)
    pods = reader.read(devices={"254:0"})
    assert {uid: p.qos for uid, p in pods.items()} == {
        WEB: "Burstable", BATCH: "BestEffort", AGENT: "Guaranteed", GONE: "BestEffort"}
    ids = {cid for p in pods.values() for cid in p.containers}
    assert ids == SANDBOXES | set(WORKLOADS)  # crio-conmon scopes are not containers
    for p in pods.values():
        for cid, c in p.containers.items():
            assert c.sandbox is (cid in SANDBOXES), (cid, c.sandbox)


def test_pod_totals_come_from_the_pod_cgroup_not_the_sum_of_children() -> None:
    pods = reader_for(V1 / "t1").read(devices={"254:0"})
    web = pods[WEB]
    children = sum(c.stats.cpu_ns for c in web.containers.values())
    pod_file = int((V1 / "t1/sys/fs/cgroup/cpuacct/kubepods/burstable" / f"pod{WEB}" /
                    "cpuacct.usage").read_text())
    assert web.stats.cpu_ns == pod_file
    # The pod cgroup holds every child once (the files were captured a few µs apart, while the
    # workload ran, hence the tolerance); adding pod and children would double it.
    assert web.stats.cpu_ns == pytest.approx(children, rel=0.01)


def test_a_host_network_pod_has_no_pod_network() -> None:
    pods = reader_for(V1 / "t1").read(devices=None)
    assert pods[AGENT].host_network is True and pods[AGENT].net is None
    assert pods[WEB].host_network is False and pods[WEB].net is not None
    assert pods[WEB].net[4] > 0  # tx bytes over the pod's own veth


def test_a_pod_removed_while_it_is_read_is_skipped(tmp_path: Path, monkeypatch: Any) -> None:
    tree = tmp_path / "node"
    shutil.copytree(V1 / "t0", tree, symlinks=True)
    reader = reader_for(tree)
    real_read = cg.read_cgroup
    gone_dirs = [p for p in (tree / "sys/fs/cgroup").glob(f"*/kubepods/besteffort/pod{GONE}")]

    def read_and_delete(layout: Any, rel: str, *args: Any, **kwargs: Any) -> Any:
        if rel.endswith(f"pod{GONE}"):
            # The kubelet removes the pod between our directory listing and the file reads:
            # the first controller's file is still read, the rest have vanished.
            stats = real_read(layout, rel, *args, **kwargs)
            for d in gone_dirs:
                shutil.rmtree(d)
            stats.mem_usage = None
            return stats
        return real_read(layout, rel, *args, **kwargs)

    monkeypatch.setattr(cg, "read_cgroup", read_and_delete)
    pods = reader.read(devices=None)
    assert GONE not in pods and set(pods) == {WEB, BATCH, AGENT}


def test_a_pod_missing_before_its_files_are_opened_is_skipped(tmp_path: Path, monkeypatch: Any) -> None:
    tree = tmp_path / "node"
    shutil.copytree(V1 / "t0", tree, symlinks=True)
    reader = reader_for(tree)
    real_list = cg.list_pods

    def list_then_delete(layout: Any) -> Any:
        listed = real_list(layout)
        for d in (tree / "sys/fs/cgroup").glob(f"*/kubepods/besteffort/pod{GONE}"):
            shutil.rmtree(d)
        return listed

    monkeypatch.setattr(cg, "list_pods", list_then_delete)
    assert GONE not in reader.read(devices=None)


def test_the_pod_of_a_process_is_found_from_its_proc_cgroup(tmp_path: Path) -> None:
    roots = roots_for(V1 / "t0")
    procs = V1 / f"t0/sys/fs/cgroup/memory/kubepods/burstable/pod{WEB}/{CID}/cgroup.procs"
    pid = int(procs.read_text().split()[0])
    assert cg.pod_uid_for_pid(roots, pid) == WEB
    assert cg.container_for_pid(roots, pid) == (WEB, CID)
    assert cg.pod_uid_for_pid(roots, 1) is None
    v2 = to_v2(V1 / "t0", tmp_path / "v2")
    assert cg.container_for_pid(roots_for(v2), pid) == (WEB, CID)


def test_a_node_without_a_kubelet_has_no_layout(tmp_path: Path) -> None:
    tree = tmp_path / "node"
    shutil.copytree(V1 / "t0", tree, symlinks=True)
    for d in (tree / "sys/fs/cgroup").glob("*/kubepods"):
        shutil.rmtree(d)
    roots = roots_for(tree)
    assert cg.discover(roots, read_cgroup_mounts(roots)) is None
