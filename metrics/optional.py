"""Fields and models that other parts of kubemonitor add, looked up where they are used.

The summary, statistics and right-sizing read pod phase and readiness, CPU and memory requests,
the model-server kind and alerts when the inventory has them, and leave them out (or say what
they used instead) when it does not, so each appears as soon as its data exists.
"""

from __future__ import annotations

from django.apps import apps
from django.db.models import Model

from metrics.models import Pod

CPU_REQUEST = "cpu_request_cores"
MEMORY_REQUEST = "memory_request_bytes"


def has_field(model: type[Model], name: str) -> bool:
    return any(f.attname == name or f.name == name for f in model._meta.concrete_fields)


def pod_has(name: str) -> bool:
    return has_field(Pod, name)


def has_requests() -> bool:
    return pod_has(CPU_REQUEST) and pod_has(MEMORY_REQUEST)


def alert_model() -> type[Model] | None:
    """The model of alert instances (pending / firing / resolved), if alerting is installed."""
    for name in ("Alert", "AlertInstance"):
        try:
            return apps.get_model("metrics", name)
        except LookupError:
            continue
    return None
