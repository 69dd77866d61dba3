"""POST /api/ingest/: what a batch stores, idempotency, all-or-nothing, inventory updates, gzip."""

from __future__ import annotations

import copy
import glob
import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings

from metrics.models import Container, ContainerSample, Node, NodeSample, Pod, PodSample
from metrics.tests.factories import NodeBatches, rfc3339, tick
from metrics.tests.ingest_helpers import post

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def small_batch(end=None, node="worker-1", pods=3):
    return NodeBatches(node, pods=pods, seed=1).batch(end or tick(30))


def counts():
    return (
        Node.objects.count(),
        NodeSample.objects.count(),
        Pod.objects.count(),
        PodSample.objects.count(),
        Container.objects.count(),
        ContainerSample.objects.count(),
    )


def test_it_stores_node_pod_and_container_rows_with_interval_start_times(client, ingest_token):
    end = tick(60)
    batch = NodeBatches("worker-1", pods=110, seed=7).batch(end)
    n_containers = sum(len(p["containers"]) for p in batch["pods"])

    response = post(client, ingest_token, batch)

    assert response.status_code == 201, response.content
    assert response.json() == {"stored": True, "pods": 110, "containers": n_containers}
    assert counts() == (1, 1, 110, 110, n_containers, n_containers)

    start = end - timedelta(seconds=10)
    node = Node.objects.get(name="worker-1")
    assert node.first_seen == start and node.last_seen == end
    assert node.cpu_capacity_cores == 16.0
    assert node.memory_total_bytes == batch["node_usage"]["memory_total_bytes"]
    node_sample = NodeSample.objects.get()
    assert node_sample.time == start and node_sample.interval_seconds == 10.0
    assert node_sample.cpu_seconds == batch["node_usage"]["cpu_seconds"]
    assert node_sample.fs_used_bytes == batch["node_usage"]["fs_used_bytes"]
    assert node_sample.memory_available_bytes == batch["node_usage"]["memory_available_bytes"]

    sent = batch["pods"][4]
    pod = Pod.objects.get(uid=sent["uid"])
    assert (pod.name, pod.namespace, pod.node_id) == (sent["name"], sent["namespace"], node.id)
    assert (pod.owner_kind, pod.owner_name, pod.deployment) == (
        sent["owner_kind"] or "",
        sent["owner_name"] or "",
        sent["deployment"],
    )
    assert pod.qos == sent["qos"] and pod.labels == sent["labels"]
    assert pod.first_seen == start and pod.last_seen == end
    sample = PodSample.objects.get(pod=pod)
    assert sample.time == start and sample.interval_seconds == 10.0 and sample.node_id == node.id
    assert sample.namespace == sent["namespace"] and sample.deployment == sent["deployment"]
    for field in (
        "cpu_seconds",
        "memory_working_set_bytes",
        "memory_rss_bytes",
        "memory_cache_bytes",
        "disk_read_bytes",
        "disk_write_bytes",
        "net_rx_bytes",
        "net_tx_bytes",
        "net_rx_packets",
        "cpu_throttled_seconds",
        "cpu_periods",
        "oom_kills",
        "psi_cpu_some_seconds",
        "cpu_limit_cores",
        "memory_limit_bytes",
    ):
        assert getattr(sample, field) == sent[field], field

    sent_container = sent["containers"][1]
    container = Container.objects.get(pod=pod, name=sent_container["name"])
    assert container.container_id == sent_container["id"] and container.image == sent_container["image"]
    c_sample = ContainerSample.objects.get(container=container)
    assert c_sample.pod_id == pod.id and c_sample.time == start
    for field in ("cpu_seconds", "memory_working_set_bytes", "disk_write_bytes", "cpu_throttled_periods", "restarts"):
        assert getattr(c_sample, field) == sent_container[field], field


def test_a_pod_or_container_with_its_own_interval_starts_that_much_before_the_batch_end(client, ingest_token):
    end = tick(60, interval=30)
    batch = small_batch(end)
    batch["pods"][1]["interval_seconds"] = 30.0
    batch["pods"][1]["containers"][0]["interval_seconds"] = 20.0

    assert post(client, ingest_token, batch).status_code == 201

    pod_sample = PodSample.objects.get(pod__uid=batch["pods"][1]["uid"])
    assert pod_sample.time == end - timedelta(seconds=30) and pod_sample.interval_seconds == 30.0
    first, second = (
        ContainerSample.objects.get(container__pod__uid=batch["pods"][1]["uid"], container__name=c["name"])
        for c in batch["pods"][1]["containers"][:2]
    )
    assert first.time == end - timedelta(seconds=20) and first.interval_seconds == 20.0
    # A container without its own interval inherits the pod's.
    assert second.time == end - timedelta(seconds=30) and second.interval_seconds == 30.0
    other = PodSample.objects.get(pod__uid=batch["pods"][2]["uid"])
    assert other.time == end - timedelta(seconds=10)


def test_the_same_batch_twice_stores_nothing_twice(client, ingest_token):
    batch = small_batch()
    assert post(client, ingest_token, batch).status_code == 201
    before = counts()
    node_before = Node.objects.values().get()

    retry = post(client, ingest_token, batch)

    assert retry.status_code == 200
    assert retry.json() == {"stored": False, "duplicate": True}
    assert counts() == before
    assert Node.objects.values().get() == node_before


def test_a_retry_with_different_values_is_still_a_duplicate_of_the_stored_interval(client, ingest_token):
    batches = NodeBatches("worker-1", pods=3, seed=1)
    end = tick(30)
    assert post(client, ingest_token, batches.batch(end)).status_code == 201
    stored = list(PodSample.objects.order_by("id").values_list("cpu_seconds", flat=True))

    assert post(client, ingest_token, batches.batch(end)).status_code == 200

    assert list(PodSample.objects.order_by("id").values_list("cpu_seconds", flat=True)) == stored


def test_a_batch_with_one_bad_pod_stores_nothing_at_all(client, ingest_token):
    batch = NodeBatches("worker-1", pods=110, seed=3).batch(tick(30))
    batch["pods"][97]["containers"][1]["cpu_seconds"] = -1

    response = post(client, ingest_token, batch)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["pods[97].containers[1].cpu_seconds"]
    assert counts() == (0, 0, 0, 0, 0, 0)


def test_nulls_are_stored_as_null_not_zero(client, ingest_token):
    batch = small_batch()
    pod = batch["pods"][0]
    pod.update(net_rx_bytes=None, net_tx_bytes=None, cpu_limit_cores=None, memory_limit_bytes=None, disk_read_bytes=None)
    pod["containers"][0]["memory_working_set_bytes"] = None
    del pod["oom_kills"]  # optional key left out: no data either
    batch["node_usage"]["disk_write_bytes"] = None

    assert post(client, ingest_token, batch).status_code == 201

    sample = PodSample.objects.get(pod__uid=pod["uid"])
    assert sample.net_rx_bytes is None and sample.net_tx_bytes is None
    assert sample.cpu_limit_cores is None and sample.memory_limit_bytes is None
    assert sample.disk_read_bytes is None and sample.oom_kills is None
    assert sample.cpu_seconds == pod["cpu_seconds"]
    c_sample = ContainerSample.objects.get(container__pod__uid=pod["uid"], container__name=pod["containers"][0]["name"])
    assert c_sample.memory_working_set_bytes is None
    assert NodeSample.objects.get().disk_write_bytes is None
    assert Pod.objects.get(uid=pod["uid"]).cpu_limit_cores is None


def test_a_null_capacity_keeps_the_node_capacity_last_reported(client, ingest_token):
    batches = NodeBatches("worker-1", pods=2, seed=1)
    t0 = tick(40)
    assert post(client, ingest_token, batches.batch(t0)).status_code == 201
    later = batches.batch(t0 + timedelta(seconds=10))
    later["node_usage"]["cpu_capacity_cores"] = None

    assert post(client, ingest_token, later).status_code == 201

    assert Node.objects.get().cpu_capacity_cores == 16.0
    assert NodeSample.objects.order_by("time").last().cpu_capacity_cores is None


def test_node_inventory_records_collector_info_warnings_and_clock_skew(client, ingest_token):
    batch = small_batch(tick(30))
    batch["warnings"] = ["blkio: throttle statistics unavailable; disk bytes reported as null"]

    assert post(client, ingest_token, batch).status_code == 201

    info = Node.objects.get().collector_info
    assert info["version"] == "0.1.0" and info["cgroup_version"] == 2
    assert info["sources"]["cgroup"] == {"ok": True, "seconds": 0.012, "error": None}
    assert info["warnings"] == batch["warnings"]
    # The interval ended about 30 s before the server received it.
    assert -60 < info["clock_skew_seconds"] < -20


def test_a_node_clock_ahead_of_the_server_gets_a_skew_warning_header(client, ingest_token):
    ahead = tick(-120)  # two minutes in the future: still accepted
    response = post(client, ingest_token, small_batch(ahead))

    assert response.status_code == 201
    assert "ahead" in response["X-Kubemonitor-Clock-Skew"]
    assert Node.objects.get().collector_info["clock_skew_seconds"] > 100


def test_a_restarted_container_and_a_moved_pod_update_the_inventory(client, ingest_token, django_capture_on_commit_callbacks):
    t0 = tick(60)
    first = small_batch(t0)
    with django_capture_on_commit_callbacks(execute=True):  # fills the in-process inventory cache
        assert post(client, ingest_token, first).status_code == 201

    # Ten seconds later the pod's first container restarted (new runtime id), its labels changed
    # and a new container appeared; and the node's second pod shows up on another node.
    second = copy.deepcopy(first)
    second["time"] = rfc3339(t0 + timedelta(seconds=10))
    pod = second["pods"][0]
    pod["containers"][0]["id"] = "containerd://" + "f" * 64
    pod["containers"][0]["restarts"] = 1
    pod["labels"]["version"] = "2"
    pod["containers"].append(dict(pod["containers"][0], name="debugger", id="containerd://" + "d" * 64))
    moved = second["pods"].pop(1)
    other = NodeBatches("worker-2", pods=1, seed=9).batch(t0 + timedelta(seconds=10))
    other["pods"] = [moved]
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, second).status_code == 201
        assert post(client, ingest_token, other).status_code == 201

    stored = Pod.objects.get(uid=pod["uid"])
    assert stored.labels["version"] == "2"
    restarted = Container.objects.get(pod=stored, name=pod["containers"][0]["name"])
    assert restarted.container_id == "containerd://" + "f" * 64
    assert restarted.first_seen == t0 - timedelta(seconds=10) and restarted.last_seen == t0 + timedelta(seconds=10)
    assert Container.objects.filter(pod=stored, name="debugger").exists()
    assert ContainerSample.objects.filter(container=restarted).count() == 2
    assert ContainerSample.objects.get(container=restarted, time=t0).restarts == 1
    moved_pod = Pod.objects.get(uid=moved["uid"])
    assert moved_pod.node.name == "worker-2"
    assert list(PodSample.objects.filter(pod=moved_pod).order_by("time").values_list("node__name", flat=True)) == [
        "worker-1",
        "worker-2",
    ]


def test_unchanged_pods_are_rewritten_only_once_their_last_seen_is_a_minute_old(client, ingest_token, django_capture_on_commit_callbacks):
    batches = NodeBatches("worker-1", pods=3, seed=1)
    start = tick(300, interval=60)
    for offset in (0, 10, 20):
        with django_capture_on_commit_callbacks(execute=True):
            assert post(client, ingest_token, batches.batch(start + timedelta(seconds=offset))).status_code == 201
    # Served from the cache: last_seen is still the first batch's end, within the minute promised.
    assert set(Pod.objects.values_list("last_seen", flat=True)) == {start}
    assert set(Container.objects.values_list("last_seen", flat=True)) == {start}
    assert PodSample.objects.count() == 9

    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, batches.batch(start + timedelta(seconds=60))).status_code == 201

    assert set(Pod.objects.values_list("last_seen", flat=True)) == {start + timedelta(seconds=60)}
    assert set(Container.objects.values_list("last_seen", flat=True)) == {start + timedelta(seconds=60)}


def test_a_deleted_and_recreated_node_does_not_reuse_cached_pod_ids(client, ingest_token, django_capture_on_commit_callbacks):
    batches = NodeBatches("worker-1", pods=2, seed=1)
    t0 = tick(40)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, batches.batch(t0)).status_code == 201
    Node.objects.all().delete()  # e.g. in the admin; cascades to its pods and containers

    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, batches.batch(t0 + timedelta(seconds=10))).status_code == 201

    pod_ids = set(Pod.objects.values_list("id", flat=True))
    assert len(pod_ids) == 2
    assert set(PodSample.objects.filter(time=t0).values_list("pod_id", flat=True)) == pod_ids


def test_a_late_batch_does_not_rewind_the_inventory(client, ingest_token):
    batches = NodeBatches("worker-1", pods=2, seed=1)
    t0 = tick(60)
    new = batches.batch(t0 + timedelta(seconds=30))
    old = batches.batch(t0)
    old["pods"][0]["labels"] = {"stale": "yes"}
    old["collector"]["version"] = "0.0.9"

    assert post(client, ingest_token, new).status_code == 201
    assert post(client, ingest_token, old).status_code == 201  # spooled, sent after a network outage

    node = Node.objects.get()
    assert node.last_seen == t0 + timedelta(seconds=30) and node.first_seen == t0 - timedelta(seconds=10)
    assert node.collector_info["version"] == "0.1.0"
    pod = Pod.objects.get(uid=new["pods"][0]["uid"])
    assert pod.labels == new["pods"][0]["labels"]
    assert pod.last_seen == t0 + timedelta(seconds=30) and pod.first_seen == t0 - timedelta(seconds=10)
    assert PodSample.objects.count() == 4


def test_a_pod_interval_overlapping_a_stored_sample_is_refused_and_nothing_is_stored(client, ingest_token):
    batches = NodeBatches("worker-1", pods=2, seed=1)
    t0 = tick(40)
    assert post(client, ingest_token, batches.batch(t0)).status_code == 201
    before = counts()
    overlapping = batches.batch(t0 + timedelta(seconds=10))
    # Claims 20 s ending at tick(30): starts where the stored sample of that pod starts.
    overlapping["pods"][1]["interval_seconds"] = 20.0

    response = post(client, ingest_token, overlapping)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["pods[1]"]
    assert counts() == before


def test_a_gzipped_batch_is_stored(client, ingest_token):
    response = post(client, ingest_token, small_batch(), gzipped=True)

    assert response.status_code == 201
    assert PodSample.objects.count() == 3


def test_server_timing_says_where_the_time_went(client, ingest_token):
    response = post(client, ingest_token, small_batch())

    names = [part.split(";")[0].strip() for part in response["Server-Timing"].split(",")]
    assert {"read", "validate", "node", "copy_pods", "copy_containers", "commit"} <= set(names)


def test_a_gzip_bomb_stops_at_the_size_limit(client, ingest_token):
    body = json.dumps(small_batch()).encode()
    bomb = gzip.compress(body[:-1] + b" " * 5_000_000 + b"}")

    with override_settings(INGEST_MAX_BODY_BYTES=1_000_000):
        response = post(client, ingest_token, bomb, HTTP_CONTENT_ENCODING="gzip")

    assert len(bomb) < 100_000
    assert response.status_code == 413
    assert "decompressed" in response.json()["errors"]["body"][0]
    assert counts() == (0, 0, 0, 0, 0, 0)


def test_a_body_over_the_limit_gets_413(client, ingest_token):
    with override_settings(INGEST_MAX_BODY_BYTES=10_000):
        response = post(client, ingest_token, small_batch(pods=20))

    assert response.status_code == 413
    assert list(response.json()["errors"]) == ["body"]


def test_truncated_or_garbled_gzip_gets_400(client, ingest_token):
    compressed = gzip.compress(json.dumps(small_batch()).encode())

    truncated = post(client, ingest_token, compressed[: len(compressed) // 2], HTTP_CONTENT_ENCODING="gzip")
    garbled = post(client, ingest_token, b"not gzip at all", HTTP_CONTENT_ENCODING="gzip")
    trailing = post(client, ingest_token, compressed + b"junk", HTTP_CONTENT_ENCODING="gzip")

    assert truncated.status_code == 400 and "Truncated" in truncated.json()["errors"]["body"][0]
    assert garbled.status_code == 400 and "gzip" in garbled.json()["errors"]["body"][0]
    assert trailing.status_code == 400
    assert counts() == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("text/plain", ""), ("application/x-www-form-urlencoded", ""), ("application/json", "br"), ("application/json", "deflate")],
)
def test_other_content_types_and_encodings_get_415(client, ingest_token, content_type, encoding):
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = post(client, ingest_token, small_batch(), content_type=content_type, **headers)

    assert response.status_code == 415
    assert list(response.json()["errors"]) == ["Content-Encoding" if encoding else "Content-Type"]


def test_a_charset_parameter_on_the_content_type_is_fine(client, ingest_token):
    response = post(client, ingest_token, small_batch(), content_type="application/json; charset=utf-8")

    assert response.status_code == 201


def test_get_is_not_allowed(client, ingest_token):
    response = client.get("/api/ingest/", HTTP_AUTHORIZATION=f"Bearer {ingest_token}")

    assert response.status_code == 405


GOLDEN = sorted(glob.glob(str(REPO / "collector" / "tests" / "golden" / "*.json")))


@pytest.mark.parametrize("path", GOLDEN, ids=[Path(p).name for p in GOLDEN])
def test_the_collectors_golden_batches_are_accepted_and_stored(client, ingest_token, path):
    batch = json.loads(Path(path).read_text())
    # The golden files carry the time of their capture; move it into the accepted window.
    batch["time"] = rfc3339(tick(30, interval=batch["interval_seconds"]))

    response = post(client, ingest_token, batch)

    assert response.status_code == 201, response.content
    assert PodSample.objects.count() == len(batch["pods"])
    assert ContainerSample.objects.count() == sum(len(p["containers"]) for p in batch["pods"])


def test_a_late_batch_is_logged_for_the_rollups_inside_the_ingest_transaction(client, ingest_token):
    from django.db import connection

    from metrics import backend
    from metrics.rollup_schema import INVALIDATION_TABLE, STATE_TABLE

    if backend.storage_tier() == "tsl":
        pytest.skip("TimescaleDB tracks invalidations of continuous aggregates itself")
    end = tick(60)
    batch = small_batch(end)
    batch["pods"][1]["interval_seconds"] = 20.0
    with connection.cursor() as cursor:
        # As if a refresh had already materialized past this batch: its samples are late.
        cursor.execute(f"UPDATE {STATE_TABLE} SET invalidation_threshold = %s", [end + timedelta(hours=1)])

    assert post(client, ingest_token, batch).status_code == 201

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT start_time, end_time FROM {INVALIDATION_TABLE}")
        assert cursor.fetchall() == [(end - timedelta(seconds=20), end)]
    # A retry stores nothing and logs nothing more.
    assert post(client, ingest_token, batch).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {INVALIDATION_TABLE}")
        assert cursor.fetchone() == (1,)


def test_a_pod_deleted_while_cached_is_written_again_when_its_last_seen_is_refreshed(client, ingest_token, django_capture_on_commit_callbacks):
    batches = NodeBatches("worker-1", pods=3, seed=1)
    start = tick(300, interval=60)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, batches.batch(start)).status_code == 201
    deleted = Pod.objects.order_by("uid").first()
    uid = deleted.uid
    deleted.delete()  # cascades to its containers

    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, batches.batch(start + timedelta(seconds=60))).status_code == 201

    again = Pod.objects.get(uid=uid)
    assert again.last_seen == start + timedelta(seconds=60)
    assert PodSample.objects.get(pod=again).time == start + timedelta(seconds=50)
    assert Container.objects.filter(pod=again).count() >= 1
    assert ContainerSample.objects.filter(pod=again, container__pod=again).exists()


def test_the_openapi_schema_describes_the_ingest_batch_and_its_answers():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)

    operation = schema["paths"]["/api/ingest/"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/IngestBatch"}
    assert {"200", "201", "400", "401", "403", "413", "415"} <= set(operation["responses"])
    pod = schema["components"]["schemas"]["IngestPod"]
    assert "uid" in pod["required"] and pod["additionalProperties"] is False


def test_the_inventory_cache_forgets_the_least_recently_used_nodes(client, ingest_token, django_capture_on_commit_callbacks, settings):
    from metrics.ingest import writer

    settings.INGEST_INVENTORY_CACHE_NODES = 2
    end = tick(30)
    for node in ("worker-1", "worker-2", "worker-3"):
        with django_capture_on_commit_callbacks(execute=True):
            assert post(client, ingest_token, NodeBatches(node, pods=1, seed=1).batch(end)).status_code == 201

    assert list(writer._cache) == ["worker-2", "worker-3"]


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_posted_twice_at_once_is_stored_once(ingest_token):
    # A collector retrying while its first attempt is still in flight: the node row lock
    # serializes the two transactions and the second finds the node sample already there.
    import threading

    from django.db import connection
    from django.test import Client

    batch = NodeBatches("worker-1", pods=20, seed=4).batch(tick(30))
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def send() -> None:
        try:
            barrier.wait()
            statuses.append(post(Client(), ingest_token, batch).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 201]
    assert (NodeSample.objects.count(), PodSample.objects.count()) == (1, 20)
