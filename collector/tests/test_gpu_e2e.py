"""GPUs end to end: the real collector (`python -m collector`) over the captured cgroup v1 node,
with NVML answering through the stand-in (fake_nvml.py, put in place of `pynvml` on the
collector's path) and the kubelet's pod-resources API served by a real gRPC server on a unix
socket, posting to the real API server (gunicorn + Django) on the test database; then read back
through /api/gpus/ and /api/nodes/{node}/gpus/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from collector.tests.test_e2e_api import REPO, ApiServer, fixture_node, wait_until
from metrics.models import ApiToken, GpuSample, NodeSample, PodSample
from metrics.tests.factories import reset_rollups
from metrics.tokens import create_token

grpc = pytest.importorskip("grpc")
from collector.podresources import api_pb2, api_pb2_grpc  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GIB = 2**30
MIB = 2**20
INTERVAL = 1.0
H100 = "GPU-8a6a3c1e-4f2b-9d7e-1c5a-3b9e7f2d6a40"
IDLE = "GPU-2f9c1b7d-6e3a-4c8b-a1d5-9e7f3b2c4d61"
WEB_UID = "051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7"
# A process of the captured node's web pod (its app container) and one of the host.
WEB_PID = 26081

# The `pynvml` the collector imports: the stand-in, with an H100 the web pod computes on and an
# idle one nobody holds.
PYNVML_SHIM = textwrap.dedent(f"""
    from collector.tests import fake_nvml as _fake_nvml
    from collector.tests.fake_nvml import *  # noqa: F401,F403 - constants and error classes

    _MIB = 2**20
    _nvml = _fake_nvml.FakeNvml([
        _fake_nvml.FakeDevice(
            uuid={H100!r}, name="NVIDIA H100 80GB HBM3", memory_total=81559 * _MIB,
            memory_used=71234 * _MIB, gpu_util=97, memory_util=48,
            compute=[({WEB_PID}, 70912 * _MIB)], temperature=61, power_mw=512_345,
            mig_mode=_fake_nvml.NVML_DEVICE_MIG_DISABLE,
        ),
        _fake_nvml.FakeDevice(
            uuid={IDLE!r}, name="NVIDIA H100 80GB HBM3", memory_total=81559 * _MIB,
            memory_used=530 * _MIB, gpu_util=0, memory_util=0, temperature=33, power_mw=69_871,
            mig_mode=_fake_nvml.NVML_DEVICE_MIG_DISABLE,
        ),
    ])


    def __getattr__(name):
        return getattr(_nvml, name)
""")


class Lister(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.calls = 0

    def List(self, request: Any, context: Any) -> api_pb2.ListPodResourcesResponse:
        self.calls += 1
        return api_pb2.ListPodResourcesResponse(pod_resources=[
            api_pb2.PodResources(name="web-147b0d", namespace="shop", containers=[
                api_pb2.ContainerResources(name="app", devices=[
                    api_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[H100])]),
            ]),
        ])


@pytest.fixture
def kubelet() -> Iterator[tuple[str, Lister]]:
    with tempfile.TemporaryDirectory(prefix="km-e2e-") as directory:
        socket = os.path.join(directory, "kubelet.sock")
        lister = Lister()
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(lister, server)
        server.add_insecure_port(f"unix://{socket}")
        server.start()
        try:
            yield socket, lister
        finally:
            server.stop(None)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path / "api.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_the_collector_reports_each_gpu_and_its_pod_through_the_api(
    api: ApiServer, kubelet: tuple[str, Lister], tmp_path: Path
) -> None:
    # The series come from the rollup views: an earlier test's refresh (its watermark) must not
    # hide this test's fresh samples.
    reset_rollups()
    socket, lister = kubelet
    node = fixture_node(tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pynvml.py").write_text(PYNVML_SHIM)
    _, token = create_token(node.name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KUBEMONITOR_") and k not in ("NODE_NAME", "KUBERNETES_SERVICE_HOST")}
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(REPO)])
    log_path = tmp_path / "collector.log"
    with log_path.open("w") as log:
        collector = subprocess.Popen(
            [sys.executable, "-m", "collector", "--api-url", api.url, "--token", token,
             "--interval", str(INTERVAL), "--node-name", node.name, "--spool-dir", str(tmp_path / "spool"),
             *node.args, "--metadata", "podlogs", "--pod-resources-socket", socket, "--log-level", "DEBUG"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: GpuSample.objects.filter(node__name=node.name).count() >= 4,
                       20 * INTERVAL + 20, "two batches with GPU samples")
        finally:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=20)
            except subprocess.TimeoutExpired:
                collector.kill()
                collector.wait()
    log_text = log_path.read_text()
    assert collector.returncode == 0, log_text[-3000:]
    assert lister.calls >= 2
    # Every batch carried both devices.
    batches = NodeSample.objects.filter(node__name=node.name).count()
    assert GpuSample.objects.filter(node__name=node.name).count() == 2 * batches

    reader = {"Authorization": f"Bearer {create_token('reader', ApiToken.Scope.READ)[1]}"}
    body = requests.get(f"{api.url}/api/gpus/", headers=reader, params={"node": node.name}, timeout=10).json()
    devices = {d["uuid"]: d for d in body["results"]}
    assert set(devices) == {H100, IDLE}
    busy = devices[H100]
    assert (busy["node"], busy["model"], busy["memory_total_bytes"], busy["mig_mode"], busy["driver_version"]) == (
        node.name, "NVIDIA H100 80GB HBM3", 81559 * MIB, "disabled", "550.54.15")
    assert busy["pod"]["namespace"] == "shop" and busy["pod"]["name"] == "web-147b0d"
    assert busy["pod"]["container"] == "app" and busy["shared"] is False
    holder = busy["pods"][0]
    assert (holder["uid"], holder["allocated"], holder["memory_bytes"]) == (WEB_UID, True, 70912 * MIB)
    usage = busy["usage"]
    assert (usage["gpu_utilization_percent"], usage["gpu_memory_bytes"], usage["gpu_power_watts"],
            usage["gpu_temperature_celsius"]) == (97.0, 71234 * MIB, 512.345, 61.0)
    idle = devices[IDLE]
    assert idle["pod"] is None and idle["pods"] == [] and idle["usage"]["gpu_power_watts"] == 69.871

    # The per-device series over the run: every covered bucket has the figures NVML gave.
    series = requests.get(f"{api.url}/api/nodes/{node.name}/gpus/", headers=reader,
                          params={"window": 120, "step": 10}, timeout=10).json()
    points = [p for d in series["results"] if d["uuid"] == H100 for p in d["series"]["points"] if p["coverage"]]
    assert points and all(p["gpu_utilization_percent"] == pytest.approx(97.0) for p in points)
    assert all(p["gpu_power_watts"] == pytest.approx(512.345) for p in points)
    assert sum(p["coverage"] * 10 for p in points) == pytest.approx(batches * INTERVAL)
    # Each GPU sample points at the pod's own sample of the same interval, which carries the
    # pod's GPU memory from the same NVML reading.
    for sample in GpuSample.objects.filter(device__uuid=H100):
        assert sample.pod is not None and sample.pod.uid == WEB_UID
        pod_sample = PodSample.objects.get(pod=sample.pod, time=sample.time)
        assert pod_sample.gpu_memory_bytes == 70912 * MIB
