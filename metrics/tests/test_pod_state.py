"""Pod state and spec through ingest: inventory (changes only), samples, the read API's fields and
filters, and nodes that stopped reporting."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from metrics.models import ApiToken, Container, ContainerSample, Node, Pod, PodSample
from metrics.tests.factories import NodeBatches, tick
from metrics.tests.ingest_helpers import post
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def with_state(batch: dict, crash: bool = False) -> dict:
    batch = copy.deepcopy(batch)
    for pod in batch["pods"]:
        pod.update(phase="Running", ready=True, cpu_request_cores=0.25, memory_request_bytes=2**27)
        for c in pod["containers"]:
            c.update(ready=True, state="running", cpu_request_cores=0.125, memory_request_bytes=2**26)
    if crash:
        pod = batch["pods"][0]
        pod["ready"] = False
        pod["containers"][0].update(
            ready=False, state="waiting", state_reason="CrashLoopBackOff",
            last_termination_reason="OOMKilled", last_termination_time="2026-11-22T22:31:39Z",
        )
        if len(batch["pods"]) > 1:
            batch["pods"][1]["phase"] = "Pending"
    return batch


def test_pod_and_container_state_reach_the_inventory_and_requests_the_samples(client, ingest_token):
    batch = with_state(NodeBatches("worker-1", pods=3, seed=1).batch(tick(30)), crash=True)
    assert post(client, ingest_token, batch).status_code == 201

    crashing = Pod.objects.get(uid=batch["pods"][0]["uid"])
    assert (crashing.phase, crashing.ready, crashing.cpu_request_cores) == ("Running", False, 0.25)
    assert crashing.memory_request_bytes == 2**27
    assert Pod.objects.get(uid=batch["pods"][1]["uid"]).phase == "Pending"
    container = Container.objects.get(pod=crashing, name=batch["pods"][0]["containers"][0]["name"])
    assert (container.state, container.state_reason, container.ready) == ("waiting", "CrashLoopBackOff", False)
    assert container.last_termination_reason == "OOMKilled"
    assert container.last_termination_time.isoformat() == "2026-11-22T22:31:39+00:00"
    sample = PodSample.objects.get(pod=crashing)
    assert (sample.cpu_request_cores, sample.memory_request_bytes) == (0.25, 2**27)
    assert set(ContainerSample.objects.values_list("cpu_request_cores", flat=True)) == {0.125}


def test_a_batch_without_state_stores_unknown_not_a_guess(client, ingest_token):
    batch = NodeBatches("worker-1", pods=2, seed=1).batch(tick(30))
    assert post(client, ingest_token, batch).status_code == 201
    assert set(Pod.objects.values_list("phase", "ready", "cpu_request_cores")) == {(None, None, None)}
    assert set(Container.objects.values_list("state", "ready")) == {(None, None)}


def test_an_unchanged_state_is_not_written_again_and_a_changed_one_is(client, ingest_token, django_capture_on_commit_callbacks):
    # A row the writer upserts gets the batch's end as last_seen; one it skips keeps the first
    # batch's (within the minute the model promises), so last_seen tells which rows were written.
    batches = NodeBatches("worker-1", pods=3, seed=1)
    start = tick(300, interval=60)
    for offset in (0, 10):
        with django_capture_on_commit_callbacks(execute=True):
            assert post(client, ingest_token, with_state(batches.batch(start + timedelta(seconds=offset)))).status_code == 201
    assert set(Pod.objects.values_list("last_seen", flat=True)) == {start}

    crashed = with_state(batches.batch(start + timedelta(seconds=20)), crash=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, ingest_token, crashed).status_code == 201
    written = {crashed["pods"][0]["uid"], crashed["pods"][1]["uid"]}  # readiness, phase changed
    for pod in Pod.objects.all():
        assert pod.last_seen == (start + timedelta(seconds=20) if pod.uid in written else start)
    changed = Container.objects.get(state_reason="CrashLoopBackOff")
    assert changed.last_seen == start + timedelta(seconds=20)
    assert Container.objects.exclude(pod=changed.pod).filter(last_seen=start + timedelta(seconds=20)).count() == 0


@pytest.mark.parametrize(("path", "value", "field"), [
    ("phase", "Crashing", "pods[0].phase"),
    ("ready", "yes", "pods[0].ready"),
    ("cpu_request_cores", -1, "pods[0].cpu_request_cores"),
    ("memory_request_bytes", 1.5, "pods[0].memory_request_bytes"),
    ("c.state", "sleeping", "pods[0].containers[0].state"),
    ("c.state_reason", "", "pods[0].containers[0].state_reason"),
    ("c.state_reason", "x" * 129, "pods[0].containers[0].state_reason"),
    ("c.last_termination_time", "yesterday", "pods[0].containers[0].last_termination_time"),
    ("c.last_termination_time", "2026-11-22T22:31:39", "pods[0].containers[0].last_termination_time"),
    ("c.last_termination_time", 1795000000, "pods[0].containers[0].last_termination_time"),
    ("c.memory_request_bytes", 2**63, "pods[0].containers[0].memory_request_bytes"),
])
def test_a_bad_state_field_gets_a_400_naming_it_and_nothing_is_stored(client, ingest_token, path, value, field):
    batch = NodeBatches("worker-1", pods=2, seed=1).batch(tick(30))
    target = batch["pods"][0]["containers"][0] if path.startswith("c.") else batch["pods"][0]
    target[path.removeprefix("c.")] = value
    response = post(client, ingest_token, batch)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Node.objects.exists()


def test_pod_lists_show_the_state_and_filter_by_phase_and_readiness(client, ingest_token, reader):
    batch = with_state(NodeBatches("worker-1", pods=4, seed=1).batch(tick(30)), crash=True)
    assert post(client, ingest_token, batch).status_code == 201
    crashing, pending = batch["pods"][0], batch["pods"][1]

    not_ready = reader.get("/api/pods/?ready=false").json()["results"]
    assert [p["uid"] for p in not_ready] == [crashing["uid"]]
    assert not_ready[0]["phase"] == "Running" and not_ready[0]["cpu_request_cores"] == 0.25
    assert [p["uid"] for p in reader.get("/api/pods/?phase=Pending").json()["results"]] == [pending["uid"]]
    assert len(reader.get("/api/pods/?phase=Running&ready=true").json()["results"]) == 2
    for query, name in (("phase=Crashing", "phase"), ("ready=no", "ready")):
        response = reader.get(f"/api/pods/?{query}")
        assert response.status_code == 400 and name in response.json()

    detail = reader.get(f"/api/namespaces/{crashing['namespace']}/pods/{crashing['name']}/").json()
    first = {c["name"]: c for c in detail["containers"]}[crashing["containers"][0]["name"]]
    assert (first["state"], first["state_reason"], first["last_termination_reason"]) == (
        "waiting", "CrashLoopBackOff", "OOMKilled")
    containers = reader.get(f"/api/namespaces/{crashing['namespace']}/pods/{crashing['name']}/containers/").json()
    assert {c["name"]: c["state"] for c in containers}[crashing["containers"][0]["name"]] == "waiting"


def test_a_node_is_not_reporting_after_three_missed_intervals(client, ingest_token, reader):
    end = tick(5)  # the newest batch ended 5-15 s ago: fewer than 3 intervals of 10 s missed
    assert post(client, ingest_token, NodeBatches("fresh", pods=1, seed=1).batch(end)).status_code == 201
    stale = NodeBatches("stale", pods=1, seed=2).batch(end - timedelta(seconds=40))
    assert post(client, ingest_token, stale).status_code == 201
    nodes = {n["name"]: n for n in reader.get("/api/nodes/").json()["results"]}
    assert nodes["fresh"]["reporting"] is True and nodes["fresh"]["interval_seconds"] == 10.0
    assert nodes["stale"]["reporting"] is False
    node = Node.objects.get(name="fresh")
    assert node.reporting(node.last_seen + timedelta(seconds=30))
    assert not node.reporting(node.last_seen + timedelta(seconds=31))
    assert timezone.now() > node.last_seen


def test_the_last_termination_time_reads_back_as_sent(client, ingest_token, reader):
    batch = with_state(NodeBatches("worker-1", pods=1, seed=1).batch(tick(30)), crash=True)
    assert post(client, ingest_token, batch).status_code == 201
    pod = batch["pods"][0]
    detail = reader.get(f"/api/namespaces/{pod['namespace']}/pods/{pod['name']}/").json()
    first = {c["name"]: c for c in detail["containers"]}[pod["containers"][0]["name"]]
    assert first["last_termination_time"] == "2026-11-22T22:31:39Z"
