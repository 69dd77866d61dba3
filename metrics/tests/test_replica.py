"""READ_DATABASE_URL: the read API reads a real streaming replica of the test server; ingest,
rollup refresh, authentication and reads inside a write transaction stay on the primary.

The module starts the replica itself (metrics/tests/replica_server.py: pg_basebackup of the test
server, a hot standby on another port) and stops it at the end. It skips, saying why, only where
a replica cannot be made (not root and no replication access, no pg_basebackup).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from django.db import connections, transaction
from django.test import Client
from django.test.utils import override_settings

from metrics import rollups
from metrics.models import ApiToken, Node
from metrics.replica import REPLICA_ALIAS, read_alias, reading_from_replica
from metrics.tests import factories as f
from metrics.tests.factories import reset_rollups
from metrics.tests.ingest_helpers import post
from metrics.tests.replica_server import StreamingReplica, Unavailable
from metrics.tokens import create_token

# `replica` is a mirror (TEST MIRROR): Django neither creates nor flushes it, and the tests may
# use it. Transactional, so that what the tests write is committed and streamed to the replica.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases=["default", REPLICA_ALIAS])]


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup: Any, django_db_blocker: Any) -> Iterator[StreamingReplica]:
    """A replica of the test server, and the `replica` alias and router READ_DATABASE_URL sets up.

    Module-scoped, so the alias exists before each test's database setup checks its databases.
    """
    s = connections["default"].settings_dict
    primary = {"host": s["HOST"] or "127.0.0.1", "port": int(s["PORT"] or 5432), "user": s["USER"] or "postgres",
               "dbname": "postgres"}
    server = StreamingReplica(primary)
    try:
        server.prepare()
    except Unavailable as exc:
        pytest.skip(f"no streaming replica of the test server can be made here: {exc}")
    try:
        server.start()
        server.test_dbname = s["NAME"]  # type: ignore[attr-defined]  # the test database, made before the backup
        connections.settings[REPLICA_ALIAS] = {
            **s, "PORT": str(server.port), "CONN_MAX_AGE": 0, "TEST": {**s["TEST"], "MIRROR": "default"},
        }
        with override_settings(DATABASE_ROUTERS=["metrics.replica.ReplicaRouter"]):
            yield server
    finally:
        if REPLICA_ALIAS in connections:
            connections[REPLICA_ALIAS].close()
            del connections[REPLICA_ALIAS]
        connections.settings.pop(REPLICA_ALIAS, None)
        server.stop()


def on_replica(sql: str, params: list[Any] | None = None) -> Any:
    with connections[REPLICA_ALIAS].cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def test_the_replica_is_a_hot_standby_of_the_test_database(replica_alias):
    assert on_replica("SELECT pg_is_in_recovery()") is True
    assert on_replica("SELECT current_database()") == connections["default"].settings_dict["NAME"]


def test_reads_go_to_the_replica_and_tolerate_its_lag(replica_alias):
    client = Client()
    ingest = create_token("collector", ApiToken.Scope.INGEST)[1]
    read = create_token("reader", ApiToken.Scope.READ)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {read}"}
    end = f.tick(60)
    assert post(client, ingest, f.batch("seen-node", end=end, pods=2)).status_code == 201
    replica_alias.wait_until_replayed(replica_alias.test_dbname)
    names = {n["name"] for n in client.get("/api/nodes/", **auth).json()["results"]}
    assert names == {"seen-node"}

    # Replay paused: the replica now lags behind the primary for as long as we like.
    on_replica("SELECT pg_wal_replay_pause()")
    try:
        # Ingest and its transaction go to the primary, which the paused replica does not stop.
        assert post(client, ingest, f.batch("late-node", end=end, pods=2)).status_code == 201
        assert Node.objects.filter(name="late-node").exists()  # outside the read API: the primary
        # The read API answers from the replica: the older state, no error. A token made while
        # the replica lagged works, since authentication reads the primary.
        fresh = create_token("fresh-reader", ApiToken.Scope.READ)[1]
        response = client.get("/api/nodes/", HTTP_AUTHORIZATION=f"Bearer {fresh}")
        assert response.status_code == 200
        assert {n["name"] for n in response.json()["results"]} == {"seen-node"}
        assert client.get("/api/nodes/late-node/", **auth).status_code == 404
        detail = client.get("/api/nodes/seen-node/?window=600", **auth)
        assert detail.status_code == 200 and detail.json()["series"]["points"]
        assert client.get("/api/cluster/", **auth).json()["nodes"] == 1
    finally:
        on_replica("SELECT pg_wal_replay_resume()")
    replica_alias.wait_until_replayed(replica_alias.test_dbname)
    names = {n["name"] for n in client.get("/api/nodes/", **auth).json()["results"]}
    assert names == {"seen-node", "late-node"}


def test_reads_inside_a_write_transaction_stay_on_the_primary(replica_alias):
    with reading_from_replica():
        assert read_alias() == REPLICA_ALIAS
        with transaction.atomic():
            Node.objects.create(name="in-transaction", first_seen=f.tick(), last_seen=f.tick())
            assert read_alias() == "default"
            assert Node.objects.filter(name="in-transaction").exists()
        assert read_alias() == REPLICA_ALIAS
    assert read_alias() == "default"


def test_the_rollup_refresh_writes_to_the_primary_while_reads_use_the_replica(replica_alias):
    reset_rollups()  # rollup tables and their state outlive the flush between tests
    client = Client()
    ingest = create_token("collector", ApiToken.Scope.INGEST)[1]
    read = create_token("reader", ApiToken.Scope.READ)[1]
    batches = f.NodeBatches("worker-1", pods=2)
    for i in range(6):
        assert post(client, ingest, batches.batch(f.tick(300 - 10 * i))).status_code == 201
    with reading_from_replica():
        result = rollups.refresh()  # takes its connection explicitly: the primary
    assert result.skipped is None
    replica_alias.wait_until_replayed(replica_alias.test_dbname)
    response = client.get("/api/namespaces/", HTTP_AUTHORIZATION=f"Bearer {read}")
    assert response.status_code == 200 and response.json()["results"]
