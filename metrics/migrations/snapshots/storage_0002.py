"""FROZEN SNAPSHOT for migrations 0002 and 0003: sample keys, hypertables and the tier record
as those migrations create them. Never edit it; a change is a new snapshot and a new migration.
Copied from metrics/storage_schema.py at 0002. It reads the server through metrics.backend
(probe, read_recorded, the cache), which describes the database rather than defining it.

DDL of migration 0002: choose and record the storage tier, key samples on (id, time), hypertables.

Kept out of the migration file so the steps can be read, and reversed, one by one. Each function
takes a DB-API cursor. Changing what these functions create needs a new migration: 0002 calls them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.db.utils import DatabaseError

from metrics import backend

# Sample tables and the column their compressed chunks are segmented by (tier tsl).
SAMPLE_TABLES: dict[str, str] = {
    "metrics_nodesample": "node_id",
    "metrics_podsample": "pod_id",
    "metrics_containersample": "container_id",
}
RAW_CHUNK_INTERVAL = "1 day"


class TimescaleDBUnavailable(RuntimeError):
    """CREATE EXTENSION failed although the server has TimescaleDB; the message says what to do."""


def _database_and_user(cursor: Any) -> tuple[str, str]:
    cursor.execute("SELECT current_database(), current_user")
    return cursor.fetchone()


def choose_and_record_tier(cursor: Any) -> str:
    """Pick the best tier the server offers (honouring settings.TIMESCALEDB), create the
    extension if needed, and record the choice in metrics_storage. Returns the tier."""
    offer = backend.probe(cursor)
    created = False
    if settings.TIMESCALEDB == "off" or not (offer.extension_available or offer.extension_version):
        tier = "plain"
    else:
        if offer.extension_version is None:
            database, user = _database_and_user(cursor)
            try:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except (DatabaseError, psycopg.Error) as exc:
                # The migration's transaction is rolled back; nothing is half-created.
                raise TimescaleDBUnavailable(
                    f"The database server offers TimescaleDB, but user {user!r} could not create "
                    f"the extension in database {database!r}: {exc}. Either run "
                    f"`CREATE EXTENSION timescaledb;` in {database!r} as a superuser (or as the "
                    "database's owner: the extension is trusted) and run migrate again, or set "
                    "TIMESCALEDB=off to store samples in plain PostgreSQL tables."
                ) from exc
            created = True
            offer = backend.probe(cursor)
        tier = "tsl" if offer.license == "timescale" else "apache"
    cursor.execute(
        f"""
        CREATE TABLE {backend.STORAGE_TABLE} (
            id smallint PRIMARY KEY CHECK (id = 1),
            tier text NOT NULL CHECK (tier IN ('tsl', 'apache', 'plain')),
            timescaledb_version text,
            -- True when migration 0002 created the extension, so reversing it drops it again.
            extension_created boolean NOT NULL,
            chosen_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    cursor.execute(
        f"INSERT INTO {backend.STORAGE_TABLE} (id, tier, timescaledb_version, extension_created) "
        "VALUES (1, %s, %s, %s)",
        [tier, offer.extension_version if tier != "plain" else None, created],
    )
    cursor.execute(
        f"COMMENT ON TABLE {backend.STORAGE_TABLE} IS "
        "'kubemonitor storage tier chosen by migration metrics.0002 (see metrics/backend.py)'"
    )
    backend.clear_cache()
    return tier


def forget_tier(cursor: Any) -> None:
    recorded = backend.read_recorded(cursor)
    cursor.execute(f"DROP TABLE IF EXISTS {backend.STORAGE_TABLE}")
    if recorded.extension_created_by_migration:
        cursor.execute("DROP EXTENSION IF EXISTS timescaledb")
    backend.clear_cache()


def set_time_primary_keys(cursor: Any) -> None:
    """Primary key (id, time): a hypertable's unique indexes must all include its time column.

    Done in every tier so the schema, and the queries the planner sees, are the same everywhere.
    Django still treats `id` as the primary key; ids come from a sequence, so they stay unique.
    """
    for table in SAMPLE_TABLES:
        cursor.execute(
            f'ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, '
            f'ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, "time")'
        )


def restore_id_primary_keys(cursor: Any) -> None:
    for table in SAMPLE_TABLES:
        cursor.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
            f"ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)"
        )


def create_hypertables(cursor: Any) -> None:
    for table in SAMPLE_TABLES:
        # Django already created a (-time) index on every sample table; TimescaleDB's default
        # time index would duplicate it.
        cursor.execute(
            "SELECT create_hypertable(%s::regclass, 'time', "
            "chunk_time_interval => %s::interval, create_default_indexes => false, "
            "migrate_data => true)",
            [table, RAW_CHUNK_INTERVAL],
        )


def is_hypertable(cursor: Any, table: str) -> bool:
    cursor.execute("SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = %s)",
        [table],
    )
    return bool(cursor.fetchone()[0])


def drop_hypertables(cursor: Any) -> None:
    """Turn each sample hypertable back into an ordinary table, keeping its rows.

    TimescaleDB has no "un-hypertable", so: copy the rows into a new ordinary table made LIKE
    the old one, drop the hypertable, rename, then recreate the constraints and indexes under
    their original names (Django's later migrations refer to them by name).
    """
    for table in SAMPLE_TABLES:
        if not is_hypertable(cursor, table):
            continue
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'x') ORDER BY contype, conname",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = %s::regclass AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1",
            [table],
        )
        indexes = [row[0] for row in cursor.fetchall()]
        scratch = f"{table}__plain"
        cursor.execute(
            f"CREATE TABLE {scratch} (LIKE {table} INCLUDING DEFAULTS INCLUDING IDENTITY "
            "INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(f"INSERT INTO {scratch} SELECT * FROM {table}")
        cursor.execute(f"DROP TABLE {table}")
        cursor.execute(f"ALTER TABLE {scratch} RENAME TO {table}")
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        sequence = cursor.fetchone()[0]
        if sequence:
            # The new identity sequence must continue after the copied ids, under the old name.
            cursor.execute(
                f"SELECT setval(%s, coalesce((SELECT max(id) FROM {table}), 0) + 1, false)",
                [sequence],
            )
            cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {table}_id_seq")
        for name, definition in constraints:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        for definition in indexes:
            cursor.execute(definition)
