"""Storage tiers: the tier recorded at migrate time, keys, hypertables, checks, reversible migrations."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from metrics import backend, rollups, storage_schema
from metrics.migrations.snapshots import storage_0002
from metrics.rollup_schema import ENTITY, RESOLUTIONS
from metrics.tests.factories import make_node, make_pod, make_pod_samples, reset_rollups

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE_TABLES = list(storage_schema.SAMPLE_TABLES)


def scalar(sql: str, params: list | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def primary_key_columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.n",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def relation_kind(name: str) -> str | None:
    return scalar("SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s))", [name])


def expected_tier() -> str:
    offer = backend.probe()
    if settings.TIMESCALEDB == "off" or offer.extension_version is None:
        return "plain"
    return "tsl" if offer.license == "timescale" else "apache"


def test_the_recorded_tier_is_the_best_the_database_offers():
    backend.clear_cache()
    assert backend.storage_tier() == expected_tier()
    caps = backend.capabilities()
    assert caps.hypertables == (caps.tier in ("tsl", "apache"))
    assert caps.continuous_aggregates == (caps.tier == "tsl")
    assert caps.bucket_function == ("date_bin" if caps.tier == "plain" else "time_bucket")


def test_timescaledb_off_gives_the_plain_tier():
    if settings.TIMESCALEDB != "off":
        pytest.skip("this run uses TimescaleDB where available (TIMESCALEDB=auto)")
    assert backend.storage_tier() == "plain"
    assert scalar("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0


def test_sample_tables_are_keyed_on_id_and_time_and_django_still_sees_id():
    from metrics.models import ContainerSample, NodeSample, PodSample

    for table in SAMPLE_TABLES:
        assert primary_key_columns(table) == ["id", "time"], table
    for model in (NodeSample, PodSample, ContainerSample):
        assert model._meta.pk.name == "id"


def test_sample_tables_are_hypertables_exactly_in_the_timescale_tiers():
    tier = backend.storage_tier()
    for table in SAMPLE_TABLES:
        assert storage_schema.is_hypertable(connection.cursor(), table) == (tier != "plain"), table
    if tier != "plain":
        interval = scalar(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'metrics_podsample' AND column_name = 'time'"
        )
        assert interval == timedelta(days=1)
        # No duplicate of Django's own (-time) index.
        assert scalar(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'metrics_podsample' "
            "AND indexdef LIKE '%%(\"time\" DESC)'"
        ) == 1


def test_every_rollup_relation_exists_with_the_documented_columns():
    for entity in ENTITY.values():
        for resolution in RESOLUTIONS:
            name = entity.relation(resolution)
            assert relation_kind(name) == "v", name  # a view or continuous aggregate
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {name} LIMIT 0")
                columns = [c.name for c in cursor.description]
            assert columns == ["bucket", *entity.key_names(), *(c.name for c in entity.columns)]


@pytest.mark.tsl
def test_tsl_rollups_are_real_time_continuous_aggregates_with_policies():
    if backend.storage_tier() != "tsl":
        pytest.skip("needs TimescaleDB with the TSL module")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        )
        caggs = dict(cursor.fetchall())
        cursor.execute(
            "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
            "WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_retention', 'policy_compression')"
        )
        # Django reads jsonb as text.
        jobs = [(proc, table, json.loads(config)) for proc, table, config in cursor.fetchall()]
    names = {e.relation(r) for e in ENTITY.values() for r in RESOLUTIONS}
    assert names <= set(caggs)
    assert not any(caggs[n] for n in names)  # materialized_only = false: real-time
    refresh = [j for j in jobs if j[0] == "policy_refresh_continuous_aggregate"]
    assert len(refresh) == 8 and all(j[2]["end_offset"] for j in refresh)
    compression = {j[1] for j in jobs if j[0] == "policy_compression"}
    assert set(SAMPLE_TABLES) <= compression
    retention = {j[1]: j[2]["drop_after"] for j in jobs if j[0] == "policy_retention"}
    assert retention["metrics_podsample"] == f"{settings.RETENTION_RAW_DAYS} days"


def test_the_check_warns_when_timescaledb_is_available_but_unused():
    offer = backend.probe()
    if backend.storage_tier() != "plain" or not offer.extension_available:
        pytest.skip("needs a plain-tier schema on a server offering TimescaleDB")
    with override_settings(TIMESCALEDB="auto"):
        ids = [m.id for m in backend.check_storage_tier(databases=["default"])]
    assert "metrics.W001" in ids
    with override_settings(TIMESCALEDB="off"):
        assert backend.check_storage_tier(databases=["default"]) == []


def test_the_check_warns_when_the_recorded_tier_no_longer_matches():
    if backend.storage_tier() == "plain":
        pytest.skip("needs a TimescaleDB-tier schema")
    assert [m.id for m in backend.check_storage_tier(databases=["default"])] == []
    with override_settings(TIMESCALEDB="off"):
        ids = [m.id for m in backend.check_storage_tier(databases=["default"])]
    assert ids == ["metrics.W002"]


def test_migrations_reverse_to_plain_tables_and_forward_again_keeping_samples():
    reset_rollups()
    node = make_node()
    pod = make_pod(node, "web-1", namespace="shop", deployment="web")
    start = rollups.floor_to(timezone.now(), timedelta(hours=1)) - timedelta(hours=2)
    make_pod_samples(pod, start, start + timedelta(minutes=30), 10, cpu_cores=0.5)
    created_extension = backend.capabilities().extension_created_by_migration
    top_id = scalar("SELECT max(id) FROM metrics_podsample")
    try:
        call_command("migrate", "metrics", "0001", verbosity=0, skip_checks=True)
        for table in SAMPLE_TABLES:
            assert primary_key_columns(table) == ["id"], table
            assert scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [table]) == 0
        for entity in ENTITY.values():
            for resolution in RESOLUTIONS:
                assert relation_kind(entity.relation(resolution)) is None
                assert relation_kind(f"{entity.relation(resolution)}_mat") is None
        assert relation_kind(backend.STORAGE_TABLE) is None
        if created_extension:
            assert scalar("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
        assert scalar("SELECT count(*) FROM metrics_podsample") == 180
    finally:
        # A fresh session: TimescaleDB is loaded per backend and was just dropped.
        connection.close()
        call_command("migrate", "metrics", verbosity=0, skip_checks=True)
        backend.clear_cache()
    assert backend.storage_tier() == expected_tier()
    for table in SAMPLE_TABLES:
        assert primary_key_columns(table) == ["id", "time"]
    rollups.refresh()
    assert scalar(
        "SELECT sum(cpu_seconds) FROM metrics_rollup_deployment_1m WHERE deployment = 'web'"
    ) == pytest.approx(0.5 * 1800)
    # New ids continue after the copied ones.
    more = make_pod_samples(pod, start + timedelta(minutes=30), start + timedelta(minutes=31), 10)
    assert min(s.pk for s in more) > top_id


def test_migration_0005_keeps_materialized_rollups_and_refills_the_new_columns_from_raw():
    if backend.storage_tier() == "tsl":
        pytest.skip("tier tsl recreates its continuous aggregates (the zero -> newest test covers it)")
    reset_rollups()
    node = make_node()
    pod = make_pod(node, "web-1", namespace="shop", deployment="web")
    start = rollups.floor_to(timezone.now(), timedelta(hours=1)) - timedelta(hours=2)
    make_pod_samples(pod, start, start + timedelta(minutes=30), 10, cpu_cores=0.5, psi_cpu_some_seconds=1.0)
    rollups.refresh()
    # The first 10 minutes leave the raw tables (as retention would): only their rollups remain.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metrics_podsample WHERE time < %s", [start + timedelta(minutes=10)])
    relation = "metrics_rollup_deployment_1m"
    try:
        call_command("migrate", "metrics", "0004", verbosity=0, skip_checks=True)
        assert scalar(f"SELECT sum(cpu_seconds) FROM {relation} WHERE deployment = 'web'") == pytest.approx(900)
        with pytest.raises(Exception, match="psi_cpu_some_seconds"):
            with transaction.atomic():
                scalar(f"SELECT sum(psi_cpu_some_seconds) FROM {relation}")
    finally:
        connection.close()
        call_command("migrate", "metrics", verbosity=0, skip_checks=True)
        backend.clear_cache()
    assert rollups.state()["pending_invalidations"] == 1
    rollups.refresh()
    old = "bucket < %s AND deployment = 'web'"
    new = "bucket >= %s AND deployment = 'web'"
    edge = [start + timedelta(minutes=10)]
    # Older buckets keep their sums and say nothing about the new columns; the rest is refilled.
    assert scalar(f"SELECT sum(cpu_seconds) FROM {relation} WHERE {old}", edge) == pytest.approx(300)
    assert scalar(f"SELECT count(psi_cpu_some_seconds) FROM {relation} WHERE {old}", edge) == 0
    assert scalar(f"SELECT sum(psi_cpu_some_seconds) FROM {relation} WHERE {new}", edge) == pytest.approx(120)
    assert scalar("SELECT sum(psi_cpu_seconds) FROM metrics_rollup_deployment_1h") == pytest.approx(1200)
    assert scalar("SELECT sum(cpu_seconds) FROM metrics_rollup_deployment_1h") == pytest.approx(900)


def test_migrate_says_what_to_do_when_it_may_not_create_the_extension():
    """A role that neither is a superuser nor owns the database cannot create the (trusted)
    extension: the error names both ways out."""
    if not backend.probe().extension_available or settings.TIMESCALEDB == "off":
        pytest.skip("needs a server offering TimescaleDB and TIMESCALEDB=auto")
    from django.db.backends.postgresql.base import DatabaseWrapper

    scratch = f"{connection.settings_dict['NAME']}_noext"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        cursor.execute(f'CREATE DATABASE "{scratch}"')
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'km_test_nosuper'")
        if not cursor.fetchone():
            cursor.execute("CREATE ROLE km_test_nosuper LOGIN NOSUPERUSER")
    other = DatabaseWrapper(
        {**connection.settings_dict, "NAME": scratch, "USER": "km_test_nosuper"}, alias="noext"
    )
    try:
        with other.cursor() as cursor:
            with pytest.raises(storage_0002.TimescaleDBUnavailable) as failure:
                storage_0002.choose_and_record_tier(cursor)
        message = str(failure.value)
        assert "CREATE EXTENSION timescaledb;" in message
        assert "superuser" in message and "TIMESCALEDB=off" in message
        assert "km_test_nosuper" in message and scratch in message
    finally:
        other.close()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}"')


def test_migrations_go_from_zero_to_the_newest_and_back_to_zero_on_this_tier():
    reset_rollups()
    try:
        call_command("migrate", "metrics", "zero", verbosity=0, skip_checks=True)
        for table in SAMPLE_TABLES:
            assert relation_kind(table) is None, table
        assert relation_kind(backend.STORAGE_TABLE) is None
        connection.close()
        call_command("migrate", "metrics", verbosity=0, skip_checks=True)
        backend.clear_cache()
        assert backend.storage_tier() == expected_tier()
        for entity in ENTITY.values():
            for resolution in RESOLUTIONS:
                assert relation_kind(entity.relation(resolution)) is not None
        connection.close()
        call_command("migrate", "metrics", "zero", verbosity=0, skip_checks=True)
        for entity in ENTITY.values():
            assert relation_kind(entity.relation("1m")) is None
    finally:
        connection.close()
        call_command("migrate", "metrics", verbosity=0, skip_checks=True)
        backend.clear_cache()
    assert backend.storage_tier() == expected_tier()


def test_migrations_use_frozen_snapshots_never_the_live_definitions():
    import ast
    from pathlib import Path

    import metrics.migrations

    live = {
        "metrics.catalogue", "metrics.rollup_schema", "metrics.storage_schema", "metrics.series",
        "metrics.rollups", "metrics.retention",
    }
    for path in Path(metrics.migrations.__file__).parent.glob("[0-9]*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
                assert not names & live, (path.name, names & live)
            elif isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & live, path.name
