"""Names follow the Kubernetes rules and every number its physical bound (metrics/ingest/rules.py);
whatever was stored before still reads back without a 500."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from metrics.models import ApiToken, Node, NodeSample, Pod, PodSample
from metrics.tests.factories import NodeBatches, rfc3339, tick
from metrics.tests.ingest_helpers import post
from metrics.tests.read_helpers import make_node, make_pod, node_rows, pod_rows
from metrics.tests.test_ingest_validation import set_
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db


def good() -> dict[str, Any]:
    return NodeBatches("worker-1", pods=3, seed=2).batch(tick(30))


def nothing_stored() -> bool:
    return not (Node.objects.exists() or NodeSample.objects.exists() or Pod.objects.exists())


BAD_NAMES = [
    ("node with a slash", "node", "a/b"),
    ("node dot-dot", "node", ".."),
    ("node with a newline", "node", "a\nb"),
    ("node of spaces", "node", "   "),
    ("node in capitals", "node", "Worker-1"),
    ("node with an underscore", "node", "worker_1"),
    ("node ending in a dash", "node", "worker-"),
    ("pod with a slash", "pods[0].name", "web/1"),
    ("pod with a question mark", "pods[0].name", "web?x=1"),
    ("namespace with a dot", "pods[0].namespace", "kube.system"),
    ("namespace of 64 characters", "pods[0].namespace", "n" * 64),
    ("container with an underscore", "pods[0].containers[0].name", "side_car"),
    ("owner with a slash", "pods[0].owner_name", "rs/1"),
    ("empty owner", "pods[0].owner_name", ""),
    ("deployment with a slash", "pods[0].deployment", "../admin"),
    ("owner kind with a space", "pods[0].owner_kind", "Replica Set"),
]


@pytest.mark.parametrize(("path", "name"), [c[1:] for c in BAD_NAMES], ids=[c[0] for c in BAD_NAMES])
def test_it_refuses_a_name_kubernetes_would_refuse(client, ingest_token, path, name):
    batch = good()
    set_(path, name)(batch)

    response = post(client, ingest_token, batch)

    assert response.status_code == 400, response.content
    assert path in response.json()["errors"]
    assert nothing_stored()


def test_the_answer_says_what_a_name_may_be(client, ingest_token):
    batch = good()
    batch["node"] = "a/b"

    message = post(client, ingest_token, batch).json()["errors"]["node"][0]

    assert "DNS-1123 subdomain" in message


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({"bad key": "v"}, 'pods[0].labels["bad key"](key)'),
        ({"example.com/": "v"}, 'pods[0].labels["example.com/"](key)'),
        ({"Example.com/app": "v"}, 'pods[0].labels["Example.com/app"](key)'),
        ({"-app": "v"}, 'pods[0].labels["-app"](key)'),
        ({"a" * 64: "v"}, 'pods[0].labels["' + "a" * 64 + '"](key)'),
        ({("p" * 60 + ".") * 5 + "p/app": "v"}, 'pods[0].labels["' + ("p" * 60 + ".") * 5 + 'p/app"](key)'),
        ({"app": "a/b"}, 'pods[0].labels["app"]'),
        ({"app": "v" * 64}, 'pods[0].labels["app"]'),
        ({"app": "-v"}, 'pods[0].labels["app"]'),
    ],
)
def test_it_refuses_label_keys_and_values_kubernetes_would_refuse(client, ingest_token, labels, field):
    batch = good()
    batch["pods"][0]["labels"] = labels

    response = post(client, ingest_token, batch)

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_it_accepts_every_shape_kubernetes_allows(client, ingest_token):
    batch = good()
    batch["node"] = "ip-10-0-1-17.eu-west-1.compute.internal"
    pod = batch["pods"][0]
    pod.update(name="web-7d4b9c8f6-x2x9z", namespace="a" * 63, owner_kind="ReplicaSet", owner_name="web-7d4b9c8f6")
    pod["labels"] = {
        "app.kubernetes.io/name": "web", "empty": "", "Mixed_Case.key-1": "Value_1.x", ("p" * 63 + ".") * 3 + "p/n": "v",
    }
    pod["containers"][0]["name"] = "c" * 63

    assert post(client, ingest_token, batch).status_code == 201
    assert Pod.objects.get(uid=pod["uid"]).labels == pod["labels"]


# --- bounds ----------------------------------------------------------------------------------------

BAD_NUMBERS = [
    ("a denormal interval", "interval_seconds", 5e-324),
    ("a half-second interval", "interval_seconds", 0.5),
    ("a pod interval under a second", "pods[0].interval_seconds", 0.01),
    ("a pod using 1e308 CPU-seconds", "pods[0].cpu_seconds", 1e308),
    # 16 cores x 10 s x the 1.5 margin is 240 CPU-seconds.
    ("a node using more CPU than its cores", "node_usage.cpu_seconds", 241.0),
    ("a container using more CPU than the node", "pods[1].containers[0].cpu_seconds", 250.0),
    ("throttled longer than the node's CPU time", "pods[0].cpu_throttled_seconds", 1000.0),
    # 64 GiB x 1.5.
    ("a pod using more memory than the node", "pods[0].memory_working_set_bytes", 97 * 2**30),
    ("available memory past the node's", "node_usage.memory_available_bytes", 2**40),
    ("a node with 1 EiB of memory", "node_usage.memory_total_bytes", 2**60),
    ("a node with a million cores", "node_usage.cpu_capacity_cores", 1e6),
    ("a pod reading 10 TB in 10 s", "pods[0].disk_read_bytes", 10**13),
    ("a node receiving 100 TB in 10 s", "node_usage.net_rx_bytes", 10**14),
    ("packets past a billion per second", "pods[0].net_rx_packets", 2**40),
    ("disk operations past the bound", "pods[0].disk_write_ops", 2**40),
    ("a pod stalled longer than the interval", "pods[0].psi_cpu_some_seconds", 20.0),
    ("a container stalled longer than the interval", "pods[0].containers[0].psi_io_full_seconds", 16.0),
    ("more CFS periods than can fit", "pods[0].cpu_periods", 10**6),
    ("a storm of OOM kills", "pods[0].containers[0].oom_kills", 10**6),
    ("an absurd CPU limit", "pods[0].cpu_limit_cores", 1e9),
    ("an absurd memory limit", "pods[0].containers[0].memory_limit_bytes", 2**62),
    ("a filesystem past an exabyte", "node_usage.fs_capacity_bytes", 2**62),
    ("a collector cycle longer than the node can do", "collector.cycle_cpu_seconds", 1e9),
]


@pytest.mark.parametrize(("path", "value"), [c[1:] for c in BAD_NUMBERS], ids=[c[0] for c in BAD_NUMBERS])
def test_it_refuses_a_number_no_machine_could_produce(client, ingest_token, path, value):
    batch = good()
    set_(path, value)(batch)

    response = post(client, ingest_token, batch)

    assert response.status_code == 400, response.content
    assert path in response.json()["errors"], response.json()
    assert nothing_stored()


def test_the_answer_gives_the_bound_and_why(client, ingest_token):
    batch = good()
    batch["pods"][0]["cpu_seconds"] = 1e308

    message = post(client, ingest_token, batch).json()["errors"]["pods[0].cpu_seconds"][0]

    assert "10 s interval" in message and "cores" in message and "240" in message


def test_a_busy_node_within_its_bounds_is_stored(client, ingest_token):
    batch = good()
    usage = batch["node_usage"]
    usage.update(cpu_seconds=16 * 10 * 1.4, memory_working_set_bytes=64 * 2**30, net_rx_bytes=10 * 12_500_000_000)
    batch["pods"][0].update(cpu_seconds=16 * 10 * 1.4, psi_cpu_some_seconds=10.0, net_rx_packets=10 * 148_800_000)

    assert post(client, ingest_token, batch).status_code == 201


def test_cpu_is_bounded_by_the_pods_own_interval(client, ingest_token):
    # A pod seen for 20 s of a 10 s batch (a missed cycle) may use up to 20 s x 16 cores x 1.5.
    batch = good()
    batch["pods"][0].update(interval_seconds=20.0, cpu_seconds=400.0)
    batch["pods"][1].update(interval_seconds=5.0, cpu_seconds=130.0)

    errors = post(client, ingest_token, batch).json()["errors"]

    assert list(errors) == ["pods[1].cpu_seconds"]


def test_a_node_without_capacity_is_bounded_by_the_absolute_caps(client, ingest_token):
    batch = good()
    batch["node_usage"].update(cpu_capacity_cores=None, memory_total_bytes=None)
    batch["pods"][0].update(cpu_seconds=1000.0, memory_working_set_bytes=2**41)
    assert post(client, ingest_token, batch).status_code == 201

    batch = good()
    batch["time"] = rfc3339(tick(20))
    batch["node_usage"].update(cpu_capacity_cores=None, memory_total_bytes=None)
    batch["pods"][0].update(cpu_seconds=1e7)
    assert "pods[0].cpu_seconds" in post(client, ingest_token, batch).json()["errors"]


def test_a_new_numeric_field_without_a_bound_fails_loudly_at_import():
    # Whoever adds a metric to the batch must say what bounds it (metrics/ingest/rules.py).
    from pydantic import BaseModel

    from metrics.ingest import rules

    class WithNewMetric(BaseModel):
        cpu_seconds: float | None = None
        widgets: int | None = None

    with pytest.raises(LookupError, match="widgets"):
        rules.Bounds(WithNewMetric)


# --- reading what was stored before the rules ------------------------------------------------------


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_lists_with_names_no_url_can_carry_still_answer(reader):
    # Written straight through the ORM, around ingest, as rows stored before the rules were.
    bad_node = make_node("a/b")
    good_node = make_node("worker-1")
    make_pod("x/y", "team/a", bad_node, deployment="d/1")
    make_pod("web-1", "shop", good_node, deployment="web")

    for path in ("/api/nodes/", "/api/pods/", "/api/namespaces/", "/api/deployments/",
                 "/api/nodes/worker-1/pods/", "/api/namespaces/shop/pods/"):
        response = reader.get(path)
        assert response.status_code == 200, (path, response.content)
    by_name = {n["name"]: n["url"] for n in reader.get("/api/nodes/").json()["results"]}
    assert by_name["a/b"] is None
    assert by_name["worker-1"].endswith("/api/nodes/worker-1/")
    pods = {p["name"]: p["url"] for p in reader.get("/api/pods/").json()["results"]}
    assert pods["x/y"] is None


def test_a_tiny_stored_interval_reads_as_null_not_a_500(reader):
    now = timezone.now()
    node = make_node("worker-1")
    pod = make_pod("web-1", "shop", node)
    start = now - timedelta(minutes=2)
    node_rows(node, start, now, 10)
    rows = pod_rows(pod, start, now, 10)
    PodSample.objects.filter(time=rows[-1].time).update(interval_seconds=5e-324)
    NodeSample.objects.filter(time__gte=rows[-1].time).update(interval_seconds=5e-324)

    for path in ("/api/nodes/", "/api/pods/", "/api/nodes/worker-1/?window=3600", "/api/namespaces/shop/pods/web-1/?window=3600"):
        response = reader.get(path)
        assert response.status_code == 200, (path, response.content)
