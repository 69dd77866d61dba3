"""Reads off a streaming replica: READ_DATABASE_URL adds the database alias `replica`.

What goes there: the reads of the read API (and so of the dashboard, which reads through it)
and of alert evaluation, each inside `reading_from_replica()`. Everything else stays on the
primary (`default`): ingest, the rollup refresh and retention, migrations, the admin, /metrics,
and authentication (a token or session made a moment ago must work at once, whatever the
replica's lag).

Two rules keep this correct:
* Only inventory and sample data are routed (the `metrics` app's models but ApiToken, and raw SQL
  through `read_connection()`); auth, sessions and django-axes always read the primary.
* A read inside a transaction on the primary stays there (it must see that transaction's own
  writes, and a replica cannot take part in it).

A replica lags its primary by its replay delay (milliseconds on a healthy LAN). The read API
already treats the newest minute as incomplete (`coverage`, lists show the newest complete
minute), so a short lag shows as what it is: data a few seconds older.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterator

from django.db import DEFAULT_DB_ALIAS, connections

REPLICA_ALIAS = "replica"
_ROUTED_APP = "metrics"
_NEVER_ROUTED = {"apitoken"}  # authentication: always the primary

_reading: ContextVar[bool] = ContextVar("kubemonitor_reading_from_replica", default=False)


def replica_configured() -> bool:
    return REPLICA_ALIAS in connections.settings


def read_alias() -> str:
    """The alias raw-SQL reads should use now: the replica inside reading_from_replica()."""
    if not _reading.get() or not replica_configured():
        return DEFAULT_DB_ALIAS
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    return REPLICA_ALIAS


def read_connection() -> Any:
    return connections[read_alias()]


@contextlib.contextmanager
def reading_from_replica() -> Iterator[None]:
    token = _reading.set(True)
    try:
        yield
    finally:
        _reading.reset(token)


class ReplicaRouter:
    """Django database router (settings.DATABASE_ROUTERS when READ_DATABASE_URL is set)."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        meta = model._meta
        if meta.app_label != _ROUTED_APP or meta.model_name in _NEVER_ROUTED:
            return DEFAULT_DB_ALIAS
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        # Both aliases are the same data, one of them a little behind.
        return True

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS
