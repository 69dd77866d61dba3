"""What the database offers, and which storage tier the schema was built for.

Three tiers (docs/architecture.md):

* ``tsl``: TimescaleDB with its TSL module (``timescaledb.license = 'timescale'``): hypertables,
  continuous aggregates with real-time aggregation, refresh / retention / compression policies.
* ``apache``: the TimescaleDB Apache edition: hypertables, ``time_bucket``, ``drop_chunks``;
  rollups are tables kept by ``refreshrollups``.
* ``plain``: PostgreSQL without the extension, or ``TIMESCALEDB=off``: ordinary tables,
  ``date_bin``, ``DELETE`` for retention.

The tier is chosen once, by migration 0002, and recorded in the one-row table
``metrics_storage``: the rollup relations and retention code must follow the schema that exists,
not what the server happens to offer today (an extension installed later does not turn ordinary
tables into hypertables). ``storage_tier()`` reads that record; ``probe()`` asks the server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

TIERS = ("tsl", "apache", "plain")
STORAGE_TABLE = "metrics_storage"


@dataclass(frozen=True)
class ServerOffer:
    """What the server offers right now, whatever the schema was built for."""

    # The extension's files are installed and the library is preloaded, so CREATE EXTENSION works.
    extension_available: bool
    # The library is installed but not in shared_preload_libraries: CREATE EXTENSION would fail.
    extension_not_preloaded: bool
    # Version of the extension created in this database, or None.
    extension_version: str | None
    # 'timescale' or 'apache'; None until the extension is loaded in this database.
    license: str | None


@dataclass(frozen=True)
class Capabilities:
    """The recorded tier of the schema plus what it means for reads and maintenance."""

    tier: str | None  # None before migrate 0002 ran
    timescaledb_version: str | None
    extension_created_by_migration: bool

    @property
    def hypertables(self) -> bool:
        return self.tier in ("tsl", "apache")

    @property
    def continuous_aggregates(self) -> bool:
        return self.tier == "tsl"

    @property
    def bucket_function(self) -> str:
        return "date_bin" if self.tier == "plain" else "time_bucket"

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "timescaledb_version": self.timescaledb_version,
            "hypertables": self.hypertables,
            "continuous_aggregates": self.continuous_aggregates,
            "bucket_function": self.bucket_function,
        }


_cache: dict[tuple[str, str], Capabilities] = {}
_cache_lock = threading.Lock()


def _cursor(cursor_or_connection: Any = None) -> Any:
    """Accept None (default database), a Django connection, or a cursor."""
    if cursor_or_connection is None:
        return connections[DEFAULT_DB_ALIAS].cursor()
    if hasattr(cursor_or_connection, "execute"):
        return cursor_or_connection
    return cursor_or_connection.cursor()


def probe(cursor_or_connection: Any = None) -> ServerOffer:
    """Ask the server what it offers (a handful of catalog reads; not cached)."""
    cursor = _cursor(cursor_or_connection)
    cursor.execute(
        """
        SELECT
            EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
            -- The loader defines this setting only when preloaded; reading
            -- shared_preload_libraries itself needs a superuser.
            EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.disable_load'),
            (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),
            nullif(current_setting('timescaledb.license', true), '')
        """
    )
    files, preloaded, version, license_ = cursor.fetchone()
    return ServerOffer(
        extension_available=bool(files and preloaded),
        extension_not_preloaded=bool(files and not preloaded),
        extension_version=version,
        license=license_,
    )


def read_recorded(cursor_or_connection: Any = None) -> Capabilities:
    cursor = _cursor(cursor_or_connection)
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [STORAGE_TABLE])
    if not cursor.fetchone()[0]:
        return Capabilities(tier=None, timescaledb_version=None, extension_created_by_migration=False)
    cursor.execute(
        f"SELECT tier, timescaledb_version, extension_created FROM {STORAGE_TABLE} WHERE id = 1"
    )
    row = cursor.fetchone()
    if row is None:
        return Capabilities(tier=None, timescaledb_version=None, extension_created_by_migration=False)
    return Capabilities(tier=row[0], timescaledb_version=row[1], extension_created_by_migration=row[2])


def capabilities(using: str = DEFAULT_DB_ALIAS) -> Capabilities:
    """The recorded storage tier of database `using`, cached per process.

    The tier changes only when migrations run, so one catalog read per process is enough; the
    cache key includes the database name so test databases get their own entry.
    """
    connection = connections[using]
    key = (using, str(connection.settings_dict.get("NAME")))
    found = _cache.get(key)
    if found is not None:
        return found
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = read_recorded(connection)
            if found.tier is not None:
                # Never cache "not migrated yet": the next call after migrate must see the tier.
                _cache[key] = found
    return found


def storage_tier(using: str = DEFAULT_DB_ALIAS) -> str | None:
    """'tsl', 'apache' or 'plain' (the tier the schema was built for), or None before migrate."""
    return capabilities(using).tier


def clear_cache() -> None:
    """Forget cached tiers (migrations that change the tier call this)."""
    with _cache_lock:
        _cache.clear()


def bucket_expression(tier: str, width: str, column: str) -> str:
    """SQL for the start of the `width` bucket (e.g. '1 minute') that `column` falls in."""
    if tier == "plain":
        return f"date_bin(INTERVAL '{width}', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    return f"time_bucket(INTERVAL '{width}', {column})"


@checks.register(checks.Tags.database)
def check_storage_tier(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when TimescaleDB is offered but unused, or the schema's tier no longer matches.

    Registered under the `database` tag, so `migrate` and `check --database default` run it.
    """
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    messages: list[checks.CheckMessage] = []
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            offer = probe(cursor)
            recorded = read_recorded(cursor)
    except DatabaseError:
        return []  # An unreachable database is reported by Django's own checks.
    if recorded.tier is None:
        return []
    setting = settings.TIMESCALEDB
    if recorded.tier == "plain" and setting != "off" and offer.extension_available:
        messages.append(
            checks.Warning(
                "TimescaleDB is available on the database server but this schema uses plain "
                "PostgreSQL tables.",
                hint="The tier is chosen when migration 0002 runs. To switch, migrate the "
                "metrics app back to 0001 and forward again (raw samples are kept; rollups older "
                "than RETENTION_RAW_DAYS are lost), or set TIMESCALEDB=off to silence this.",
                id="metrics.W001",
            )
        )
    if recorded.tier == "plain" and setting != "off" and offer.extension_not_preloaded:
        messages.append(
            checks.Warning(
                "TimescaleDB is installed on the database server but not preloaded, so this "
                "schema uses plain PostgreSQL tables.",
                hint="Add timescaledb to shared_preload_libraries, restart PostgreSQL, then "
                "migrate metrics back to 0001 and forward again; or set TIMESCALEDB=off.",
                id="metrics.W001",
            )
        )
    mismatch = None
    if recorded.tier in ("tsl", "apache") and offer.extension_version is None:
        mismatch = "the TimescaleDB extension is no longer installed in this database"
    elif recorded.tier == "tsl" and offer.license != "timescale":
        mismatch = f"timescaledb.license is now {offer.license!r}, so continuous aggregates and policies do not run"
    elif recorded.tier == "apache" and offer.license == "timescale":
        mismatch = "the TimescaleDB TSL module is now licensed but the schema keeps application-maintained rollups"
    elif recorded.tier in ("tsl", "apache") and setting == "off":
        mismatch = "TIMESCALEDB is now 'off'"
    if mismatch:
        messages.append(
            checks.Warning(
                f"The schema was built for storage tier {recorded.tier!r}, but {mismatch}.",
                hint="Migrate the metrics app back to 0001 and forward again to rebuild for "
                "the database as it is now. Raw samples are kept and the next refreshrollups "
                "rebuilds the rollups from them; rollups older than RETENTION_RAW_DAYS are lost.",
                id="metrics.W002",
            )
        )
    return messages
