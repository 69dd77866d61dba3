"""/healthz and /readyz."""

from __future__ import annotations

import pytest
from django.test import Client

from metrics import health


def test_healthz_answers_without_touching_the_database(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


@pytest.fixture
def fresh_probe(monkeypatch):
    monkeypatch.setattr(health, "_migrations_applied", False)


def test_readyz_is_ok_with_the_database_migrated(db, fresh_probe):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert health._migrations_applied is True


def test_readyz_is_503_with_unapplied_migrations(db, fresh_probe, monkeypatch):
    # A migration the database has not seen, as after deploying new code before `migrate`.
    from django.db.migrations.executor import MigrationExecutor

    real_plan = MigrationExecutor.migration_plan

    def plan_with_one_pending(self, targets, clean_start=False):
        return real_plan(self, targets, clean_start) or [("pending", False)]

    monkeypatch.setattr(MigrationExecutor, "migration_plan", plan_with_one_pending)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert b"1 migrations not applied" in response.content
    assert health._migrations_applied is False


def test_readyz_is_503_when_the_database_is_unreachable(db, fresh_probe, monkeypatch):
    # A real connection attempt to a port nothing listens on.
    from django.db import connection
    from django.db.backends.postgresql.base import DatabaseWrapper

    unreachable = DatabaseWrapper({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": "1"}, "unreachable")
    monkeypatch.setattr(health, "connection", unreachable)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert b"database unreachable" in response.content


def test_probes_refuse_post(db):
    assert Client().post("/healthz").status_code == 405
