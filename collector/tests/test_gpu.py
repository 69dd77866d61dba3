"""GPU source: NVML responses in the real pynvml shapes (see fake_nvml.py), pods via /proc/<pid>/cgroup."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from collector.paths import Roots
from collector.sources import gpu
from collector.tests import fake_nvml
from collector.tests.fake_nvml import FakeDevice, FakeNvml

POD_A = "6f1c3c2e-0d7b-4b1e-9a55-3e2f0c1d9b10"
POD_B = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
CTR_A = "3b2f0d4c6e8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c"
CTR_B1 = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
CTR_B2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

# /proc/<pid>/cgroup as this kind of node writes it (cgroup v1, separate cpu and cpuacct, cgroupfs
# driver); the systemd-driver and v2 spellings are covered by the parser tests below.
V1_CGROUP = """\
9:name=systemd:/kubepods/{qos}pod{uid}/{ctr}
8:pids:/kubepods/{qos}pod{uid}/{ctr}
7:blkio:/kubepods/{qos}pod{uid}/{ctr}
6:freezer:/kubepods/{qos}pod{uid}/{ctr}
5:devices:/kubepods/{qos}pod{uid}/{ctr}
4:memory:/kubepods/{qos}pod{uid}/{ctr}
3:cpuset:/kubepods/{qos}pod{uid}/{ctr}
2:cpuacct:/kubepods/{qos}pod{uid}/{ctr}
1:cpu:/kubepods/{qos}pod{uid}/{ctr}
0::/
"""
HOST_CGROUP = """\
9:name=systemd:/system.slice/nvidia-persistenced.service
4:memory:/system.slice/nvidia-persistenced.service
1:cpu:/
0::/system.slice/nvidia-persistenced.service
"""

GIB = 1024**3
MIB = 1024**2
T0 = 1_795_000_000_000_000  # µs since the epoch, as NVML timestamps are


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    def write(pid: int, text: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)

    write(4101, V1_CGROUP.format(qos="burstable/", uid=POD_A, ctr=CTR_A))
    write(4202, V1_CGROUP.format(qos="", uid=POD_B, ctr=CTR_B1))  # a Guaranteed pod
    write(4203, V1_CGROUP.format(qos="", uid=POD_B, ctr=CTR_B2))
    write(1777, HOST_CGROUP)
    return Roots(proc=str(tmp_path))


def two_a100s() -> list[FakeDevice]:
    return [
        FakeDevice(
            uuid="GPU-5d2c1f7a-8a6e-2b1c-93f0-7e4d2a1b9c08",
            name="NVIDIA A100-SXM4-80GB",
            memory_total=80 * GIB,
            memory_used=30 * GIB,
            gpu_util=90,
            memory_util=41,
            compute=[(4101, 20 * GIB), (4202, 6 * GIB)],
            graphics=[(1777, 512 * MIB)],
            samples=[
                (4101, T0 + 1_000_000, 80, 30),
                (4101, T0 + 6_000_000, 60, 20),
                (4202, T0 + 6_000_000, 10, 5),
                (1777, T0 + 6_000_000, 1, 0),
            ],
        ),
        FakeDevice(
            uuid="GPU-c0ffee00-1234-5678-9abc-def012345678",
            name="NVIDIA A100-SXM4-80GB",
            memory_total=80 * GIB,
            memory_used=12 * GIB,
            gpu_util=40,
            memory_util=12,
            compute=[(4203, 11 * GIB)],
            samples=[(4203, T0 + 5_000_000, 40, 12)],
        ),
    ]


def test_a_node_without_the_library_has_no_gpu_data_and_logs_one_debug_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    caplog.set_level(logging.DEBUG, logger="collector.sources.gpu")
    source = gpu.GpuSource()

    assert source.read() is None
    assert source.read() is None
    messages = [r for r in caplog.records if r.name == "collector.sources.gpu"]
    assert [(r.levelno, r.getMessage()) for r in messages] == [
        (logging.DEBUG, "gpu: no GPU data (pynvml not installed)")
    ]


@pytest.mark.parametrize(
    "code",
    [fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED, fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND],
    ids=["driver-not-loaded", "library-not-found"],
)
def test_a_node_without_a_driver_has_no_gpu_data_and_no_warning(
    code: int, roots: Roots, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.sources.gpu")
    nvml = FakeNvml(two_a100s(), init_error=code)
    source = gpu.GpuSource(roots, nvml=nvml)

    assert source.read() is None
    assert nvml.init_calls == 1
    assert nvml.shutdown_calls == 0  # nvmlInit failed: there is nothing to shut down
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    assert "Driver Not Loaded" in caplog.text or "Library Not Found" in caplog.text


def test_an_unexpected_init_failure_is_a_warning_not_an_error(
    roots: Roots, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = FakeNvml(two_a100s(), init_error=fake_nvml.NVML_ERROR_UNKNOWN)
    assert gpu.GpuSource(roots, nvml=nvml).read() is None
    assert "gpu: nvmlInit failed: Unknown Error" in caplog.text


def test_two_devices_with_processes_in_two_pods_and_the_host(roots: Roots) -> None:
    nvml = FakeNvml(two_a100s())
    reading = gpu.GpuSource(roots, nvml=nvml).read()

    assert reading is not None
    assert [d.uuid for d in reading.devices] == [d.uuid for d in nvml.devices]
    assert reading.devices[0].memory_total_bytes == 80 * GIB
    # Node: mean device utilisation, summed memory in use (host processes included).
    assert reading.node.utilization_percent == pytest.approx((90 + 40) / 2)
    assert reading.node.memory_bytes == 42 * GIB
    # Pod A: one process on device 0, two samples in the window -> their mean.
    assert reading.pods[POD_A].utilization_percent == pytest.approx(70.0)
    assert reading.pods[POD_A].memory_bytes == 20 * GIB
    # Pod B: a container on each device; the pod is their sum (percent of one GPU).
    assert reading.containers[(POD_B, CTR_B1)].utilization_percent == pytest.approx(10.0)
    assert reading.containers[(POD_B, CTR_B1)].memory_bytes == 6 * GIB
    assert reading.containers[(POD_B, CTR_B2)].utilization_percent == pytest.approx(40.0)
    assert reading.containers[(POD_B, CTR_B2)].memory_bytes == 11 * GIB
    assert reading.pods[POD_B].utilization_percent == pytest.approx(50.0)
    assert reading.pods[POD_B].memory_bytes == 17 * GIB
    # The host process counts for the node only.
    host = [p for p in reading.processes if p.pid == 1777]
    assert host and host[0].pod_uid is None
    assert set(reading.pods) == {POD_A, POD_B}
    assert nvml.open == 0 and nvml.shutdown_calls == 1


def test_process_utilisation_only_counts_samples_newer_than_the_last_cycle(
    roots: Roots,
) -> None:
    nvml = FakeNvml(two_a100s())
    source = gpu.GpuSource(roots, nvml=nvml, clock=lambda: (T0 + 20_000_000) / 1e6)
    source.read()
    nvml.devices[0].samples.append((4101, T0 + 16_000_000, 25, 10))

    second = source.read()

    assert second is not None
    # Device 0 is asked from its newest sample seen; device 1 likewise.
    assert nvml.process_utilization_calls[-2:] == [
        (nvml.devices[0].uuid, T0 + 6_000_000),
        (nvml.devices[1].uuid, T0 + 5_000_000),
    ]
    assert second.pods[POD_A].utilization_percent == pytest.approx(25.0)
    # No new sample on device 1 (NVML says NOT_FOUND): its process used no SM time.
    assert second.containers[(POD_B, CTR_B2)].utilization_percent == 0.0
    assert nvml.init_calls == 2 and nvml.shutdown_calls == 2 and nvml.open == 0


def test_without_per_process_utilisation_pods_get_memory_but_no_utilisation(
    roots: Roots,
) -> None:
    devices = two_a100s()
    for device in devices:
        device.errors["nvmlDeviceGetProcessUtilization"] = fake_nvml.NVML_ERROR_NOT_SUPPORTED
    reading = gpu.GpuSource(roots, nvml=FakeNvml(devices)).read()

    assert reading is not None
    assert reading.pods[POD_A].utilization_percent is None
    assert reading.pods[POD_A].memory_bytes == 20 * GIB
    assert reading.node.utilization_percent == pytest.approx(65.0)


def test_a_device_without_utilisation_counters_is_left_out_of_the_mean(roots: Roots) -> None:
    devices = two_a100s()
    devices[1].errors["nvmlDeviceGetUtilizationRates"] = fake_nvml.NVML_ERROR_NOT_SUPPORTED
    reading = gpu.GpuSource(roots, nvml=FakeNvml(devices)).read()

    assert reading is not None
    assert reading.node.utilization_percent == pytest.approx(90.0)
    assert reading.node.memory_bytes == 42 * GIB


def test_a_lost_gpu_is_skipped_and_the_others_still_reported(
    roots: Roots, caplog: pytest.LogCaptureFixture
) -> None:
    devices = two_a100s()
    devices[0].errors["nvmlDeviceGetUUID"] = fake_nvml.NVML_ERROR_GPU_IS_LOST
    nvml = FakeNvml(devices)
    reading = gpu.GpuSource(roots, nvml=nvml).read()

    assert reading is not None
    assert [d.index for d in reading.devices] == [1]
    assert set(reading.pods) == {POD_B}
    assert "gpu: device 0 skipped: GPU is lost" in caplog.text
    assert nvml.shutdown_calls == 1


def test_nvml_is_shut_down_even_when_reading_fails(roots: Roots) -> None:
    nvml = FakeNvml(two_a100s())

    def broken_mapper(pid: int) -> tuple[str | None, str | None]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        gpu.GpuSource(roots, nvml=nvml, pid_mapper=broken_mapper).read()
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 1 and nvml.open == 0


def test_a_node_with_the_driver_but_no_device_has_no_gpu_data(roots: Roots) -> None:
    nvml = FakeNvml([])
    assert gpu.GpuSource(roots, nvml=nvml).read() is None
    assert nvml.shutdown_calls == 1


def test_a_compute_and_graphics_process_is_counted_once(roots: Roots) -> None:
    devices = two_a100s()
    devices[0].graphics.append((4101, 20 * GIB))
    reading = gpu.GpuSource(roots, nvml=FakeNvml(devices)).read()

    assert reading is not None
    assert reading.pods[POD_A].memory_bytes == 20 * GIB
    assert [p.pid for p in reading.processes].count(4101) == 1


def test_memory_the_driver_cannot_report_is_no_data_not_zero(roots: Roots) -> None:
    devices = two_a100s()
    devices[1].compute = [(4203, None)]  # NVML_VALUE_NOT_AVAILABLE -> None in pynvml
    reading = gpu.GpuSource(roots, nvml=FakeNvml(devices)).read()

    assert reading is not None
    assert reading.containers[(POD_B, CTR_B2)].memory_bytes is None
    assert reading.pods[POD_B].memory_bytes == 6 * GIB


def test_a_process_that_exited_before_its_cgroup_was_read_is_the_hosts(roots: Roots) -> None:
    devices = two_a100s()
    devices[0].compute.append((999999, 1 * GIB))  # no /proc/999999
    reading = gpu.GpuSource(roots, nvml=FakeNvml(devices)).read()

    assert reading is not None
    assert reading.node.memory_bytes == 42 * GIB
    assert {p.pid: p.pod_uid for p in reading.processes}[999999] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (V1_CGROUP.format(qos="burstable/", uid=POD_A, ctr=CTR_A), (POD_A, CTR_A)),
        (V1_CGROUP.format(qos="", uid=POD_B, ctr=CTR_B1), (POD_B, CTR_B1)),
        (
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            + POD_A.replace("-", "_")
            + f".slice/cri-containerd-{CTR_A}.scope\n",
            (POD_A, CTR_A),
        ),
        (
            "0::/kubepods.slice/kubepods-pod" + POD_B.replace("-", "_")
            + f".slice/crio-{CTR_B1}.scope\n",
            (POD_B, CTR_B1),
        ),
        (
            "4:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            + POD_A.replace("-", "_") + f".slice/docker-{CTR_A}.scope\n",
            (POD_A, CTR_A),
        ),
        # A static (mirror) pod: its uid is a 32-hex hash.
        (
            "0::/kubepods/burstable/pod0f3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e/" + CTR_A + "\n",
            ("0f3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e", CTR_A),
        ),
        # A process in the pod cgroup itself (no container).
        ("4:memory:/kubepods/burstable/pod" + POD_A + "\n", (POD_A, None)),
        (HOST_CGROUP, (None, None)),
        ("0::/\n", (None, None)),
    ],
    ids=["v1-burstable", "v1-guaranteed", "v2-systemd-containerd", "v2-systemd-crio",
         "v1-systemd-docker", "static-pod", "pod-level", "host", "root"],
)
def test_it_maps_a_process_cgroup_to_its_pod_and_container(
    text: str, expected: tuple[str | None, str | None], tmp_path: Path
) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(text)
    assert gpu.pod_container_for_pid(Roots(proc=str(tmp_path)), 4242) == expected


def test_the_fake_matches_the_installed_pynvml() -> None:
    """Keeps fake_nvml honest: same struct fields, error codes and error classes as the real one."""
    pynvml = pytest.importorskip("pynvml")
    for name in ("c_nvmlMemory_t", "c_nvmlUtilization_t", "c_nvmlProcessUtilizationSample_t"):
        real = [(f[0], f[1]) for f in getattr(pynvml, name)._fields_]
        fake = [(f[0], f[1]) for f in getattr(fake_nvml, name)._fields_]
        assert real == fake, name
    assert [f[0] for f in pynvml.c_nvmlProcessInfo_t._fields_] == [
        f[0] for f in fake_nvml.c_nvmlProcessInfo_v2_t._fields_
    ]
    for code_name in ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NOT_FOUND",
                      "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIBRARY_NOT_FOUND",
                      "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_GPU_IS_LOST",
                      "NVML_ERROR_NO_PERMISSION"):
        assert getattr(pynvml, code_name) == getattr(fake_nvml, code_name), code_name
        assert getattr(pynvml, code_name) == getattr(gpu, code_name), code_name
    real_error = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    fake_error = fake_nvml.NVMLError(fake_nvml.NVML_ERROR_NOT_SUPPORTED)
    assert type(real_error).__name__ == type(fake_error).__name__ == "NVMLError_NotSupported"
    assert str(real_error) == str(fake_error) == "Not Supported"
    assert real_error.value == fake_error.value


def test_without_a_driver_the_real_bindings_fail_the_way_the_fake_does() -> None:
    """On this machine (no libnvidia-ml.so.1) the installed pynvml raises LIBRARY_NOT_FOUND from
    nvmlInit, which the source must treat as 'no GPU'."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        assert error.value in (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
                               pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    else:  # a real GPU node: nothing to compare, but do not leave NVML open
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    assert gpu.GpuSource(nvml=pynvml).read() is None


def test_read_gpus_gives_contract_keys_per_node_pod_and_container(
    roots: Roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = FakeNvml(two_a100s())
    monkeypatch.setattr(gpu, "load_nvml", lambda: nvml)
    monkeypatch.setattr(gpu, "_SOURCES", {})

    reading = gpu.read_gpus(roots)

    assert reading is not None
    assert [d["uuid"] for d in reading.pop("devices")] == [d.uuid for d in nvml.devices]
    assert reading == {
        "node": {"gpu_utilization_percent": 65.0, "gpu_memory_bytes": 42 * GIB},
        "pods": {
            POD_A: {"gpu_utilization_percent": 70.0, "gpu_memory_bytes": 20 * GIB},
            POD_B: {"gpu_utilization_percent": 50.0, "gpu_memory_bytes": 17 * GIB},
        },
        "containers": {
            CTR_A: {"gpu_utilization_percent": 70.0, "gpu_memory_bytes": 20 * GIB},
            CTR_B1: {"gpu_utilization_percent": 10.0, "gpu_memory_bytes": 6 * GIB},
            CTR_B2: {"gpu_utilization_percent": 40.0, "gpu_memory_bytes": 11 * GIB},
        },
    }
    # The same source (and its sample timestamps) serves the next cycle; NVML is closed between.
    gpu.read_gpus(roots)
    assert nvml.init_calls == 2 and nvml.open == 0
    assert nvml.process_utilization_calls[-2][1] == T0 + 6_000_000


def test_read_gpus_without_a_driver_is_none(roots: Roots, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "load_nvml",
                        lambda: FakeNvml([], init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED))
    monkeypatch.setattr(gpu, "_SOURCES", {})
    assert gpu.read_gpus(roots) is None


def test_the_reading_has_the_shape_delta_puts_into_the_batch(
    roots: Roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector import delta

    monkeypatch.setattr(gpu, "load_nvml", lambda: FakeNvml(two_a100s()))
    monkeypatch.setattr(gpu, "_SOURCES", {})
    node, pods, containers = delta.gpu_fields(gpu.read_gpus(roots))

    assert node == {"gpu_utilization_percent": 65.0, "gpu_memory_bytes": 42 * GIB}
    assert pods[POD_B]["gpu_memory_bytes"] == 17 * GIB
    assert containers[CTR_B2]["gpu_utilization_percent"] == 40.0


def test_gpu_figures_reach_the_batch_of_a_captured_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshot + delta over the captured cgroup v1 node, with NVML answering for two of its
    processes: the web pod's app container (pid 26081) and its pause container (pid 26064, whose
    memory counts for the pod but which is never a container row)."""
    from collector.snapshot import Collector
    from collector.delta import build_batch
    from collector.tests.fixture_node import FIXTURES, FixtureNode

    web_uid = "051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7"
    app_id = "e4a610d89475eb9844291f10ef01147394c5c1a791888eb2efb927685bca1519"
    device = FakeDevice(
        uuid="GPU-5d2c1f7a-8a6e-2b1c-93f0-7e4d2a1b9c08", name="NVIDIA A100-SXM4-80GB",
        memory_total=80 * GIB, memory_used=9 * GIB, gpu_util=35, memory_util=10,
        compute=[(26081, 8 * GIB), (26064, 256 * MIB)],
        samples=[(26081, T0 + 1_000_000, 90, 9)],
    )
    monkeypatch.setattr(gpu, "load_nvml", lambda: FakeNvml([device]))
    monkeypatch.setattr(gpu, "_SOURCES", {})
    node = FixtureNode(tmp_path / "node", monkeypatch)
    node.collector = Collector(node.roots, gpu=True)
    tree = FIXTURES / "v1-cgroupfs"

    first = node.take(tree / "t0", 1_795_000_000.0)
    # NVML keeps sampling between cycles; only samples newer than the last cycle's count.
    device.samples.append((26081, T0 + 9_000_000, 30, 9))
    second = node.take(tree / "t1", 1_795_000_010.0)
    batch = build_batch(first, second, "worker-1", lambda uid: None, 10.0)

    assert batch["node_usage"]["gpu_utilization_percent"] == 35.0
    assert batch["node_usage"]["gpu_memory_bytes"] == 9 * GIB
    web = next(p for p in batch["pods"] if p["uid"] == web_uid)
    assert web["gpu_memory_bytes"] == 8 * GIB + 256 * MIB
    assert web["gpu_utilization_percent"] == 30.0
    app = next(c for c in web["containers"] if c["id"].endswith(app_id))
    assert app["gpu_memory_bytes"] == 8 * GIB and app["gpu_utilization_percent"] == 30.0
    others = [c for c in web["containers"] if not c["id"].endswith(app_id)]
    assert others and all("gpu_memory_bytes" not in c for c in others)
    assert all("gpu_memory_bytes" not in p for p in batch["pods"] if p["uid"] != web_uid)


# An H100 node and an A100 in MIG mode, with the figures such devices report (driver 550.54.15:
# an H100 80GB HBM3 shows 81559 MiB total, an A100-SXM4-40GB 40960 MiB; MIG 1g.5gb instances 4864
# MiB and 3g.20gb 19968 MiB; an idle H100 draws about 70 W, a busy one 300-700 W).
H100_MEMORY = 81559 * MIB
A100_MEMORY = 40960 * MIB


def h100(util_samples: list[tuple[int, int]]) -> FakeDevice:
    return FakeDevice(
        uuid="GPU-8a6a3c1e-4f2b-9d7e-1c5a-3b9e7f2d6a40", name="NVIDIA H100 80GB HBM3",
        memory_total=H100_MEMORY, memory_used=71234 * MIB, gpu_util=97, memory_util=48,
        compute=[(4101, 70912 * MIB)], samples=[(4101, T0 + 9_000_000, 96, 47)],
        util_samples=util_samples, temperature=61, power_mw=512_345, energy_mj=91_234_567_890,
        mig_mode=fake_nvml.NVML_DEVICE_MIG_DISABLE,
    )


def a100_mig() -> FakeDevice:
    one_g = FakeDevice(uuid="MIG-4f3a2b1c-9d8e-5f7a-b6c4-1e2d3f4a5b6c", name="NVIDIA A100-SXM4-40GB MIG 1g.5gb",
                       memory_total=4864 * MIB, memory_used=3100 * MIB, gpu_util=0, memory_util=0,
                       compute=[(4202, 3088 * MIB)], is_mig_instance=True)
    three_g = FakeDevice(uuid="MIG-7b6a5c4d-3e2f-5a1b-9c8d-7e6f5a4b3c2d", name="NVIDIA A100-SXM4-40GB MIG 3g.20gb",
                         memory_total=19968 * MIB, memory_used=13 * MIB, gpu_util=0, memory_util=0,
                         is_mig_instance=True)
    return FakeDevice(
        uuid="GPU-1d2c3b4a-5e6f-7a8b-9c0d-1e2f3a4b5c6d", name="NVIDIA A100-SXM4-40GB",
        memory_total=A100_MEMORY, memory_used=3113 * MIB, gpu_util=0, memory_util=0,
        temperature=38, power_mw=71_877, energy_mj=None, mig_mode=fake_nvml.NVML_DEVICE_MIG_ENABLE,
        mig=[None, one_g, None, three_g],
    )


def test_it_reads_each_devices_inventory_power_and_temperature(roots: Roots) -> None:
    nvml = FakeNvml([h100([]), a100_mig()])
    reading = gpu.GpuSource(roots, nvml=nvml, clock=lambda: (T0 + 10_000_000) / 1e6).read()

    assert reading is not None
    rows = [d.contract() for d in reading.devices]
    assert [(r["name"], r["index"], r["parent_uuid"], r["mig_mode"]) for r in rows] == [
        ("NVIDIA H100 80GB HBM3", 0, None, "disabled"),
        ("NVIDIA A100-SXM4-40GB", 1, None, "enabled"),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", 1, "GPU-1d2c3b4a-5e6f-7a8b-9c0d-1e2f3a4b5c6d", None),
        ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", 3, "GPU-1d2c3b4a-5e6f-7a8b-9c0d-1e2f3a4b5c6d", None),
    ]
    assert all(r["driver_version"] == "550.54.15" for r in rows)
    h, a, one_g, _ = rows
    # No energy reading before this one: the current draw, in watts.
    assert (h["power_watts"], h["temperature_celsius"], h["utilization_percent"]) == (512.345, 61.0, 97.0)
    assert h["memory_total_bytes"] == H100_MEMORY and h["memory_used_bytes"] == 71234 * MIB
    # A GPU in MIG mode and its instances have no utilisation counter; the instance has its memory.
    assert a["utilization_percent"] is None and a["power_watts"] == 71.877
    assert one_g["memory_total_bytes"] == 4864 * MIB and one_g["power_watts"] is None
    assert [d.per_process_utilization for d in reading.devices] == [True, False, False, False]
    # The MIG instance's process belongs to pod B; memory counts, utilisation is unknown.
    assert reading.pods[POD_B].memory_bytes == 3088 * MIB
    assert reading.pods[POD_B].utilization_percent is None
    # Node totals count whole GPUs once (not their instances again).
    assert reading.node.memory_bytes == (71234 + 3113) * MIB
    assert reading.node.utilization_percent == 97.0


def test_device_utilisation_is_time_weighted_over_the_interval_and_power_comes_from_energy(roots: Roots) -> None:
    now = [(T0 + 10_000_000) / 1e6]
    device = h100([(T0 + 9_000_000, 40), (T0 + 9_500_000, 80)])
    nvml = FakeNvml([device])
    source = gpu.GpuSource(roots, nvml=nvml, clock=lambda: now[0])
    first = source.read()
    assert first is not None
    # The first two samples, each standing for the half second before it (the typical gap).
    assert first.devices[0].utilization_percent == pytest.approx(60.0)

    # Ten seconds later: 1 s at 100 %, then 9 s at 10 %, and 4.2 kJ used (420 W).
    now[0] += 10
    device.util_samples += [(T0 + 10_500_000, 100), (T0 + 19_500_000, 10)]
    device.energy_mj += 4_200_000
    second = source.read()

    assert second is not None
    assert second.devices[0].utilization_percent == pytest.approx((1.0 * 100 + 9.0 * 10) / 10.0)
    assert second.devices[0].power_watts == pytest.approx(420.0)


def test_the_fake_nvml_samples_match_the_installed_pynvml() -> None:
    pynvml = pytest.importorskip("pynvml")
    for name in ("c_nvmlValue_t", "c_nvmlSample_t"):
        real = [f[0] for f in getattr(pynvml, name)._fields_]
        assert real == [f[0] for f in getattr(fake_nvml, name)._fields_], name
    for constant in ("NVML_GPU_UTILIZATION_SAMPLES", "NVML_TEMPERATURE_GPU", "NVML_DEVICE_MIG_ENABLE",
                     "NVML_VALUE_TYPE_UNSIGNED_INT"):
        assert getattr(pynvml, constant) == getattr(fake_nvml, constant), constant
    for constant in ("NVML_GPU_UTILIZATION_SAMPLES", "NVML_TEMPERATURE_GPU", "NVML_DEVICE_MIG_ENABLE"):
        assert getattr(pynvml, constant) == getattr(gpu, constant), constant
    for function in ("nvmlDeviceGetSamples", "nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount",
                     "nvmlDeviceGetMigDeviceHandleByIndex", "nvmlDeviceGetTemperature",
                     "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption",
                     "nvmlSystemGetDriverVersion"):
        assert callable(getattr(pynvml, function)), function
