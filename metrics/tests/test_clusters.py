"""Clusters: which cluster a batch writes into, tokens bound to one, and the cluster endpoints."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client


from metrics.models import ApiToken, Cluster, Node, NodeSample, PodSample
from metrics.tests.factories import batch, rfc3339, tick
from metrics.tests.ingest_helpers import post
from metrics.tokens import create_token


def _token(cluster: str | None = None) -> str:
    bound = Cluster.objects.get_or_create(name=cluster)[0] if cluster else None
    return create_token(f"collector-{cluster or 'any'}", ApiToken.Scope.INGEST, bound)[1]


def _batch(node: str, cluster: str | None = None, seconds_ago: float = 0, pods: int = 2) -> dict:
    body = batch(node, end=tick(seconds_ago), pods=pods)
    if cluster is not None:
        body["cluster"] = cluster
    return body


def test_a_batch_naming_no_cluster_joins_the_default_cluster(db, ingest_token):
    response = post(Client(), ingest_token, _batch("worker-1"))
    assert response.status_code == 201, response.content
    assert Node.objects.get(name="worker-1").cluster.name == "default"


def test_a_batch_naming_its_cluster_makes_it_and_joins_it(db, ingest_token):
    response = post(Client(), ingest_token, _batch("eu-1", "prod-eu"))
    assert response.status_code == 201, response.content
    assert Node.objects.get(name="eu-1").cluster.name == "prod-eu"
    # A later batch without the field keeps the node where it is.
    response = post(Client(), ingest_token, _batch("eu-1", seconds_ago=-10))
    assert response.status_code == 201, response.content
    assert Node.objects.get(name="eu-1").cluster.name == "prod-eu"


def test_it_rejects_a_cluster_name_that_is_empty_or_not_a_string(db, ingest_token):
    for value in ("", 7):
        response = post(Client(), ingest_token, _batch("worker-1", value))  # type: ignore[arg-type]
        assert response.status_code == 400
        assert "cluster" in response.json()["errors"]
    assert not Node.objects.exists()


def test_a_token_bound_to_a_cluster_cannot_write_into_another(db):
    token = _token("prod")
    Cluster.objects.create(name="dev")
    response = post(Client(), token, _batch("worker-1", "dev"))
    assert response.status_code == 403
    assert "prod" in response.json()["errors"]["cluster"][0]
    response = post(Client(), token, _batch("worker-1", "never-made"))
    assert response.status_code == 403 and "cluster" in response.json()["errors"]
    assert not Node.objects.exists() and not PodSample.objects.exists()
    assert not Cluster.objects.filter(name="never-made").exists()


def test_a_bound_token_writes_into_its_cluster_whether_or_not_the_batch_names_it(db):
    token = _token("prod")
    assert post(Client(), token, _batch("worker-1")).status_code == 201
    assert post(Client(), token, _batch("worker-2", "prod")).status_code == 201
    assert set(Node.objects.values_list("cluster__name", flat=True)) == {"prod"}


def test_a_bound_token_cannot_write_for_a_node_of_another_cluster(db, ingest_token):
    assert post(Client(), ingest_token, _batch("worker-1", "dev", seconds_ago=10)).status_code == 201
    stored = NodeSample.objects.count()
    response = post(Client(), _token("prod"), _batch("worker-1"))
    assert response.status_code == 403
    message = response.json()["errors"]["cluster"][0]
    assert "'dev'" in message and "'prod'" in message
    assert NodeSample.objects.count() == stored


def test_a_node_never_moves_to_another_cluster_silently(db, ingest_token):
    assert post(Client(), ingest_token, _batch("worker-1", "dev", seconds_ago=10)).status_code == 201
    pods_before = PodSample.objects.count()
    response = post(Client(), ingest_token, _batch("worker-1", "prod"))
    assert response.status_code == 409
    assert "rename the cluster" in response.json()["errors"]["cluster"][0]
    assert PodSample.objects.count() == pods_before
    assert Node.objects.get(name="worker-1").cluster.name == "dev"


def test_createcollectortoken_binds_a_token_to_a_cluster(db):
    out, err = StringIO(), StringIO()
    call_command("createcollectortoken", "eu-collectors", "--cluster", "prod-eu", stdout=out, stderr=err)
    token = ApiToken.objects.get(name="eu-collectors")
    assert token.cluster is not None and token.cluster.name == "prod-eu"
    assert out.getvalue().startswith("km_") and "Created cluster" in err.getvalue()
    with pytest.raises(Exception, match="ingest tokens only"):
        call_command("createcollectortoken", "reader", "--scope", "read", "--cluster", "prod-eu", stdout=out)


@pytest.fixture
def two_clusters(db, ingest_token):
    """prod: two nodes, dev: one node, ten minutes of batches each (the rollup views aggregate the
    newest raw data on the fly)."""
    client = Client()
    for seconds_ago in range(600, -1, -10):
        for node, cluster in (("p-1", "prod"), ("p-2", "prod"), ("d-1", "dev")):
            response = post(client, ingest_token, _batch(node, cluster, seconds_ago))
            assert response.status_code == 201, response.content

    reader = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {reader}")


def test_clusters_list_each_cluster_with_its_own_nodes_and_capacity(two_clusters):
    body = two_clusters.get("/api/clusters/").json()
    by_name = {c["name"]: c for c in body["results"]}
    assert set(by_name) == {"dev", "prod"}
    assert by_name["prod"]["nodes"] == 2 and by_name["dev"]["nodes"] == 1
    assert by_name["prod"]["pods"] == 4 and by_name["dev"]["pods"] == 2
    assert by_name["prod"]["cpu_capacity_millicores"] == pytest.approx(32_000)
    assert by_name["prod"]["url"].endswith("/api/clusters/prod/")
    prod, dev = by_name["prod"]["usage"], by_name["dev"]["usage"]
    assert prod is not None and dev is not None
    assert prod["cpu_capacity_millicores"] == pytest.approx(2 * dev["cpu_capacity_millicores"])


def test_a_cluster_series_sums_only_its_own_nodes(two_clusters):
    from datetime import datetime

    for name, capacity in (("prod", 32_000), ("dev", 16_000)):
        body = two_clusters.get(f"/api/clusters/{name}/", {"window": 600, "step": 60}).json()
        full = [p for p in body["series"]["points"] if p["coverage"] == pytest.approx(1.0)]
        assert len(full) >= 5
        for point in full:
            start = datetime.fromisoformat(point["time"].replace("Z", "+00:00"))
            samples = NodeSample.objects.filter(
                node__cluster__name=name, time__gte=start, time__lt=start + timedelta(seconds=60)
            )
            truth = sum(s.cpu_seconds for s in samples) / 60 * 1000
            assert point["cpu_millicores"] == pytest.approx(truth, rel=1e-6)
            assert point["cpu_capacity_millicores"] == pytest.approx(capacity)


def test_the_single_cluster_endpoint_answers_for_the_default_cluster(two_clusters):
    # Neither is named CLUSTER_NAME ("default") and there are two: the answer says where to look.
    response = two_clusters.get("/api/cluster/")
    assert response.status_code == 404 and "/api/clusters/" in response.json()["detail"]
    Cluster.objects.filter(name="dev").update(name="default")
    body = two_clusters.get("/api/cluster/").json()
    assert body["name"] == "default" and body["nodes"] == 1


def test_an_unknown_cluster_is_a_404(two_clusters):
    assert two_clusters.get("/api/clusters/nope/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_migration_puts_existing_nodes_into_the_default_cluster():
    executor = MigrationExecutor(connection)
    executor.migrate([("metrics", "0011_rollup_refresh_seconds")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO metrics_node (name, first_seen, last_seen, collector_info) "
                "VALUES ('old-node', now(), now(), '{}')"
            )
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("metrics"))
        node = Node.objects.get(name="old-node")
        assert node.cluster.name == "default"
    finally:
        call_command("migrate", "metrics", verbosity=0, skip_checks=True)
        Node.objects.all().delete()
        Cluster.objects.all().delete()


def test_the_time_helper_is_used_for_aligned_batches():
    # Guards the fixture: batches 10 s apart never overlap (they are the idempotency key).
    assert (tick(0) - tick(10)) == timedelta(seconds=10)
    assert rfc3339(tick(0)).endswith("Z")


@pytest.mark.django_db(transaction=True)
def test_a_cluster_deleted_while_remembered_is_made_again_by_the_next_batch():
    token = create_token("collector-any", ApiToken.Scope.INGEST)[1]
    assert post(Client(), token, _batch("worker-1", "temp", seconds_ago=10)).status_code == 201
    # In the admin: the node deleted, then its now empty cluster; ingest still remembers its id.
    Node.objects.all().delete()
    Cluster.objects.filter(name="temp").delete()
    response = post(Client(), token, _batch("worker-1", "temp"))
    assert response.status_code == 201, response.content
    assert Node.objects.get(name="worker-1").cluster.name == "temp"
