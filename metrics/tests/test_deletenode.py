"""`manage.py deletenode NAME`: a node, its inventory, its samples and its share of the rollups go."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from metrics import rollups
from metrics.models import Container, Node, Pod
from metrics.tests import factories as f
from metrics.tests.factories import reset_rollups
from metrics.tests.ingest_helpers import post


def scalar(sql: str, params: list | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def send(client: Client, token: str, node: str, ticks: list) -> None:
    batches = f.NodeBatches(node, pods=4)
    for end in ticks:
        assert post(client, token, batches.batch(end)).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_it_deletes_a_node_with_its_samples_and_recomputes_the_rollups_without_it(ingest_token):
    reset_rollups()  # rollup tables and their state outlive the flush between tests
    client = Client()
    ticks = [f.tick(600 - 10 * i) for i in range(12)]  # two whole minutes, ten minutes ago
    send(client, ingest_token, "gone-node", ticks)
    send(client, ingest_token, "kept-node", ticks)
    rollups.refresh()
    kept_cpu = scalar(
        "SELECT sum(s.cpu_seconds) FROM metrics_podsample s JOIN metrics_pod p ON p.id = s.pod_id "
        "JOIN metrics_node n ON n.id = p.node_id WHERE n.name = 'kept-node'"
    )
    assert scalar("SELECT sum(cpu_seconds) FROM metrics_rollup_namespace_1m") > kept_cpu

    out = StringIO()
    call_command("deletenode", "gone-node", stdout=out)
    assert "deleted node 'gone-node': 4 pod(s)" in out.getvalue()
    rollups.refresh()

    assert list(Node.objects.values_list("name", flat=True)) == ["kept-node"]
    assert set(Pod.objects.values_list("node__name", flat=True)) == {"kept-node"}
    kept_pods = list(Pod.objects.values_list("id", flat=True))
    assert not Container.objects.exclude(pod_id__in=kept_pods).exists()
    assert scalar("SELECT count(*) FROM metrics_podsample WHERE NOT (pod_id = ANY(%s))", [kept_pods]) == 0
    assert scalar("SELECT count(*) FROM metrics_containersample WHERE NOT (pod_id = ANY(%s))", [kept_pods]) == 0
    assert scalar("SELECT count(*) FROM metrics_nodesample") == len(ticks)
    # The rollups hold only what the kept node sent.
    left = scalar("SELECT array_agg(bucket::text || ' ' || samples) FROM metrics_rollup_node_1m WHERE node_id <> (SELECT id FROM metrics_node WHERE name = 'kept-node')")
    assert left is None, (left, [t.isoformat() for t in ticks])
    assert scalar("SELECT sum(cpu_seconds) FROM metrics_rollup_namespace_1m") == pytest.approx(kept_cpu)
    assert scalar("SELECT sum(cpu_seconds) FROM metrics_rollup_pod_1m") == pytest.approx(kept_cpu)


def test_it_names_an_unknown_node(db):
    with pytest.raises(CommandError, match="No node named 'nope'"):
        call_command("deletenode", "nope")
