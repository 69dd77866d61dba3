"""GPU allocations from a real gRPC pod-resources server on a unix socket, and who holds each GPU.

The server is grpcio's, serving the generated PodResourcesLister servicer in-process; the answer
is what a kubelet with the NVIDIA device plugin gives for an H100 node with a time-sliced GPU and
an A100 in MIG mode (device ids as the plugin writes them, plus a non-GPU device and CPU ids the
collector must skip).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.gpuattribution import attribute
from collector.sources import Sources, podresources
from collector.sources.podresources import Allocation

grpc = pytest.importorskip("grpc")
from collector.podresources import api_pb2, api_pb2_grpc  # noqa: E402

H100_0 = "GPU-8a6a3c1e-4f2b-9d7e-1c5a-3b9e7f2d6a40"
H100_1 = "GPU-2f9c1b7d-6e3a-4c8b-a1d5-9e7f3b2c4d61"
MIG_A = "MIG-4f3a2b1c-9d8e-5f7a-b6c4-1e2d3f4a5b6c"
MIG_B = "MIG-7b6a5c4d-3e2f-5a1b-9c8d-7e6f5a4b3c2d"


def kubelet_answer() -> api_pb2.ListPodResourcesResponse:
    def devices(resource: str, *ids: str) -> api_pb2.ContainerDevices:
        return api_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))

    pod = api_pb2.PodResources
    container = api_pb2.ContainerResources
    return api_pb2.ListPodResourcesResponse(pod_resources=[
        pod(name="llama-7f9c6d5b8-x2x4q", namespace="serving", containers=[
            container(name="vllm", devices=[devices("nvidia.com/gpu", H100_0)]),
            container(name="metrics-sidecar"),
        ]),
        # Two notebooks time-slicing one GPU: the plugin hands out replicas GPU-…::<n>.
        pod(name="notebook-a", namespace="research", containers=[
            container(name="jupyter", devices=[devices("nvidia.com/gpu", H100_1 + "::0")]),
        ]),
        pod(name="notebook-b", namespace="research", containers=[
            container(name="jupyter", devices=[devices("nvidia.com/gpu", H100_1 + "::3")]),
        ]),
        pod(name="embedder-0", namespace="serving", containers=[
            container(name="embed", devices=[devices("nvidia.com/mig-1g.10gb", MIG_A)]),
        ]),
        pod(name="sriov-router", namespace="net", containers=[
            container(name="router", devices=[devices("intel.com/intel_sriov_netdevice", "0000:3b:02.1")]),
        ]),
        pod(name="coredns-5d78c9869d-abcde", namespace="kube-system", containers=[container(name="coredns")]),
    ])


class Lister(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, answer: api_pb2.ListPodResourcesResponse, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0

    def List(self, request: Any, context: Any) -> api_pb2.ListPodResourcesResponse:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.answer


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="km-pr-") as name:
        yield Path(name)


def serve(socket: Path, lister: Lister) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(lister, server)
    assert server.add_insecure_port(f"unix://{socket}") != 0 or socket.exists()
    server.start()
    return server


def test_it_lists_gpu_allocations_over_the_kubelet_socket(short_dir: Path) -> None:
    socket = short_dir / "kubelet.sock"
    lister = Lister(kubelet_answer())
    server = serve(socket, lister)
    try:
        found = podresources.read_allocations(str(socket))
    finally:
        server.stop(None)

    assert lister.calls == 1
    assert found == [
        Allocation("serving", "llama-7f9c6d5b8-x2x4q", "vllm", "nvidia.com/gpu", H100_0, H100_0),
        Allocation("research", "notebook-a", "jupyter", "nvidia.com/gpu", H100_1, H100_1 + "::0"),
        Allocation("research", "notebook-b", "jupyter", "nvidia.com/gpu", H100_1, H100_1 + "::3"),
        Allocation("serving", "embedder-0", "embed", "nvidia.com/mig-1g.10gb", MIG_A, MIG_A),
    ]


def test_a_node_without_the_socket_reads_nothing_and_never_imports_grpc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc -> ImportError
    assert podresources.read_allocations(str(tmp_path / "kubelet.sock")) is None


def test_a_plain_file_where_the_socket_should_be_is_no_socket(tmp_path: Path) -> None:
    (tmp_path / "kubelet.sock").write_text("")
    assert podresources.read_allocations(str(tmp_path / "kubelet.sock")) is None


def test_a_kubelet_slower_than_the_timeout_fails_the_source_not_the_cycle(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    socket = short_dir / "kubelet.sock"
    server = serve(socket, Lister(kubelet_answer(), delay=1.0))
    sources = Sources()
    try:
        for _ in range(2):
            sources.begin_cycle()
            started = time.monotonic()
            result = sources.run("podresources", podresources.read_allocations, str(socket), 0.2)
            assert time.monotonic() - started < 0.9
            assert result is None
    finally:
        server.stop(None)

    status = sources.status["podresources"]
    assert status["ok"] is False and "DEADLINE_EXCEEDED" in status["error"]
    # Reported once in the log, not every cycle.
    assert [r.getMessage()[:32] for r in caplog.records if r.levelno == logging.WARNING] == [
        "source podresources failed: _Ina"
    ]


def test_a_stale_socket_without_a_kubelet_behind_it_is_reported(short_dir: Path) -> None:
    import socket as sockets

    path = short_dir / "kubelet.sock"
    listener = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays, nobody listens: what a restarting kubelet leaves
    sources = Sources()
    sources.run("podresources", podresources.read_allocations, str(path), 0.5)
    assert sources.status["podresources"]["ok"] is False
    assert "UNAVAILABLE" in sources.status["podresources"]["error"]


def _pods() -> list[dict[str, Any]]:
    def row(uid: str, ns: str, name: str, *containers: tuple[str, str]) -> dict[str, Any]:
        return {"uid": uid, "namespace": ns, "name": name,
                "containers": [{"name": n, "id": "containerd://" + cid} for n, cid in containers]}

    return [
        row("u-llama", "serving", "llama-7f9c6d5b8-x2x4q", ("vllm", "c1"), ("metrics-sidecar", "c2")),
        row("u-nb-a", "research", "notebook-a", ("jupyter", "c3")),
        row("u-nb-b", "research", "notebook-b", ("jupyter", "c4")),
        row("u-embed", "serving", "embedder-0", ("embed", "c5")),
    ]


def _device(uuid: str, util: float | None, per_process: bool, processes: list[dict[str, Any]],
            parent: str | None = None) -> dict[str, Any]:
    return {"uuid": uuid, "index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85520809984,
            "mig_mode": "disabled", "driver_version": "550.54.15", "parent_uuid": parent,
            "utilization_percent": util, "memory_used_bytes": 1, "power_watts": 300.0,
            "temperature_celsius": 50.0, "per_process_utilization": per_process, "processes": processes}


def _process(uid: str | None, cid: str | None, memory: int | None, util: float | None) -> dict[str, Any]:
    return {"pid": 1, "pod_uid": uid, "container_id": cid, "memory_bytes": memory, "utilization_percent": util}


def test_each_gpu_names_its_pod_from_allocations_and_processes() -> None:
    allocations = podresources.allocations(kubelet_answer())
    devices = [
        _device(H100_0, 93.0, True, [_process("u-llama", "c1", 70 * 2**30, 91.5), _process(None, None, 2**20, 0.0)]),
        _device(H100_1, 40.0, True, [_process("u-nb-a", "c3", 2**30, 30.0), _process("u-nb-b", "c4", 2**29, 9.0)]),
        _device(MIG_A, None, False, [_process("u-embed", "c5", 5 * 2**30, None)], parent="GPU-a100"),
        # Rates unknown and nobody on it: a MIG instance nobody was given.
        _device(MIG_B, None, False, [], parent="GPU-a100"),
    ]

    found = attribute(devices, allocations, _pods())
    gpus = {g["uuid"]: g for g in found.gpus}

    llama = gpus[H100_0]
    assert llama["shared"] is False
    assert llama["pods"] == [{"uid": "u-llama", "namespace": "serving", "pod": "llama-7f9c6d5b8-x2x4q",
                              "container": "vllm", "allocated": True, "memory_bytes": 70 * 2**30,
                              "utilization_percent": 91.5}]
    assert "processes" not in llama and "per_process_utilization" not in llama
    shared = gpus[H100_1]
    assert shared["shared"] is True
    assert [(p["pod"], p["utilization_percent"], p["allocated"]) for p in shared["pods"]] == [
        ("notebook-a", 30.0, True), ("notebook-b", 9.0, True)]
    # MIG: no per-process utilisation; memory still counts, and the instance's own figures
    # (here none: MIG instances have no utilisation counter) go to the one pod holding it.
    mig = gpus[MIG_A]
    assert mig["pods"][0]["memory_bytes"] == 5 * 2**30 and mig["pods"][0]["utilization_percent"] is None
    assert gpus[MIG_B]["pods"] == [] and gpus[MIG_B]["shared"] is False
    assert found.pod_utilization == {}


def test_a_vgpu_without_per_process_figures_gives_its_own_utilisation_to_the_pod_holding_it() -> None:
    devices = [_device(H100_0, 77.0, False, [_process("u-llama", "c1", 60 * 2**30, None)])]
    found = attribute(devices, podresources.allocations(kubelet_answer()), _pods())

    assert found.gpus[0]["pods"][0]["utilization_percent"] == 77.0
    assert found.pod_utilization == {"u-llama": 77.0}
    assert found.container_utilization == {("u-llama", "vllm"): 77.0}


def test_a_pod_using_a_gpu_without_a_device_plugin_is_found_by_its_processes() -> None:
    devices = [_device(H100_0, 50.0, True, [_process("u-embed", "c5", 2**30, 50.0)])]
    found = attribute(devices, None, _pods())
    assert [(p["pod"], p["container"], p["allocated"]) for p in found.gpus[0]["pods"]] == [
        ("embedder-0", "embed", False)]


def test_a_process_in_the_pod_cgroup_itself_counts_for_the_allocated_container() -> None:
    devices = [_device(H100_0, 50.0, True, [_process("u-llama", None, 2**30, 12.0),
                                            _process("u-llama", "c1", 2**30, 30.0)])]
    found = attribute(devices, podresources.allocations(kubelet_answer()), _pods())
    assert [(p["container"], p["memory_bytes"], p["utilization_percent"]) for p in found.gpus[0]["pods"]] == [
        ("vllm", 2 * 2**30, 42.0)]


def test_the_committed_stubs_are_what_the_script_generates_from_the_proto(tmp_path: Path) -> None:
    """scripts/gen-podresources.sh must have been run after the last change to api.proto."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    pytest.importorskip("grpc_tools")
    copy = tmp_path / "repo"
    (copy / "collector").mkdir(parents=True)
    shutil.copytree(repo / "collector" / "podresources", copy / "collector" / "podresources")
    shutil.copytree(repo / "scripts", copy / "scripts")
    for name in ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py"):
        (copy / "collector" / "podresources" / name).unlink()
    subprocess.run(["sh", str(copy / "scripts" / "gen-podresources.sh")], check=True,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    for name in ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py"):
        assert (copy / "collector" / "podresources" / name).read_text() == \
            (repo / "collector" / "podresources" / name).read_text(), name
