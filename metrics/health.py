"""Liveness and readiness probes: plain views, no DRF, no session, no auth."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# Migrations are only ever applied while the process runs, never undone, so once the plan was
# empty it stays empty and later probes skip loading the migration graph.
_migrations_applied = False


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    # Process up and serving; deliberately no database, so a database outage does not make
    # Kubernetes restart every API pod.
    return HttpResponse("ok\n", content_type="text/plain")


def _unapplied_migrations() -> int:
    global _migrations_applied
    if _migrations_applied:
        return 0
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    _migrations_applied = not plan
    return len(plan)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        pending = _unapplied_migrations()
    except DatabaseError as exc:
        return HttpResponse(f"database unreachable: {exc.__class__.__name__}\n", status=503, content_type="text/plain")
    if pending:
        return HttpResponse(f"{pending} migrations not applied\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
