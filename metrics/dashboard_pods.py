"""The dashboard's pods table: filtered, sorted and paginated on the server.

The Pod inventory is a plain table (not a hypertable), so counting it for the paginator is cheap.
PostgreSQL sorts and pages; usage (series.latest_pods) is read for the page's pods only. Sorting
by CPU or memory orders by each matching pod's newest sample, found by a correlated subquery (one
index probe per pod), which stays fast for thousands of pods (bench/dashboard.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from django.db.models import ExpressionWrapper, F, FloatField, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from metrics import series
from metrics.models import Pod, PodSample

# Fields other parts of kubemonitor add to Pod (phase from the kubelet, the model-server kind):
# their filters and columns appear once the model has them.
PHASE_FIELD = "phase"
KIND_FIELDS = ("model_server_kind", "model_server")
RESTART_FIELDS = ("restarts", "restart_count")

# A pod whose newest sample is older than this has stopped (or its node stopped reporting).
# Pod.last_seen lags by up to a minute (metrics.models.Pod), hence more than LATEST_LOOKBACK.
RECENT = timedelta(minutes=10)

DB_SORTS = {
    "name": ("name", "namespace", "id"),
    "namespace": ("namespace", "name", "id"),
    "node": ("node__name", "namespace", "name", "id"),
    "age": ("first_seen", "id"),
}
# The newest sample's column each usage sort orders by (what latest_pods shows, in sample units).
USAGE_SORTS: dict[str, Any] = {
    "cpu": ExpressionWrapper(F("cpu_seconds") / F("interval_seconds"), output_field=FloatField()),
    "memory": F("memory_working_set_bytes"),
}
SORTS = (*DB_SORTS, *USAGE_SORTS)


def has_field(name: str) -> bool:
    return any(f.name == name for f in Pod._meta.get_fields())


def kind_field() -> str | None:
    return next((f for f in KIND_FIELDS if has_field(f)), None)


def restart_field() -> str | None:
    return next((f for f in RESTART_FIELDS if has_field(f)), None)


@dataclass(frozen=True)
class PodQuery:
    namespace: str = ""
    node: str = ""
    deployment: str = ""
    phase: str = ""
    kind: str = ""
    q: str = ""
    seen: str = "recent"  # or "all": stopped pods too
    sort: str = "name"  # a key of SORTS, "-" first for descending
    fixed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], fixed: dict[str, str]) -> PodQuery:
        def get(name: str) -> str:
            return str(params.get(name) or "").strip().replace("\x00", "")

        sort = get("sort") or "name"
        if sort.lstrip("-") not in SORTS:
            sort = "name"
        seen = "all" if get("seen") == "all" else "recent"
        values = {k: get(k) for k in ("namespace", "node", "deployment", "phase", "kind", "q")}
        # The page's own entity (a node's pods, a namespace's) cannot be filtered away.
        values.update(fixed)
        return cls(**values, seen=seen, sort=sort, fixed=dict(fixed))

    def queryset(self) -> QuerySet[Pod]:
        qs = Pod.objects.select_related("node")
        if self.namespace:
            qs = qs.filter(namespace=self.namespace)
        if self.node:
            qs = qs.filter(node__name=self.node)
        if self.deployment:
            qs = qs.filter(deployment=self.deployment)
        if self.phase and has_field(PHASE_FIELD):
            qs = qs.filter(**{PHASE_FIELD: self.phase})
        kind = kind_field()
        if self.kind and kind:
            qs = qs.filter(**{kind: self.kind})
        if self.q:
            qs = qs.filter(
                Q(name__icontains=self.q) | Q(namespace__icontains=self.q)
                | Q(deployment__icontains=self.q) | Q(node__name__icontains=self.q)
                | Q(owner_name__icontains=self.q)
            )
        if self.seen == "recent":
            qs = qs.filter(last_seen__gte=timezone.now() - RECENT)
        return qs

    def params(self, **changes: str) -> str:
        """This query as a URL query string, with `changes` applied (for sort links and pages)."""
        from urllib.parse import urlencode

        values = {
            "namespace": self.namespace, "node": self.node, "deployment": self.deployment,
            "phase": self.phase, "kind": self.kind, "q": self.q, "seen": self.seen, "sort": self.sort,
        }
        values.update(changes)
        for key in self.fixed:
            values.pop(key, None)
        # Defaults stay out of the URL.
        if values.get("seen") == "recent":
            values.pop("seen")
        if values.get("sort") == "name":
            values.pop("sort")
        return urlencode({k: v for k, v in values.items() if v})


def pod_rows(query: PodQuery, offset: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of rows (pod, usage, optional fields) and the number of matching pods."""
    qs = query.queryset()
    key = query.sort.lstrip("-")
    descending = query.sort.startswith("-")
    end = None if limit is None else offset + limit
    total = qs.count()
    if key in DB_SORTS:
        order: list[Any] = [f"-{o}" if descending else o for o in DB_SORTS[key]]
    else:
        # The newest sample's value, looked up per pod by PostgreSQL (one index probe each on
        # (pod, time), only the newest chunks): no pod is loaded into Python but the page's.
        newest = PodSample.objects.filter(
            pod_id=OuterRef("pk"), time__gte=timezone.now() - series.LATEST_LOOKBACK
        ).order_by("-time")
        qs = qs.annotate(sort_value=Subquery(newest.values(value=USAGE_SORTS[key])[:1]))
        # Pods without a recent sample go last either way.
        value = F("sort_value").desc(nulls_last=True) if descending else F("sort_value").asc(nulls_last=True)
        order = [value, "name", "id"]
    page = list(qs.order_by(*order)[offset:end])
    usage = series.latest_pods(page)
    restarts = restart_field()
    kind = kind_field()
    rows = []
    for p in page:
        u = usage.get(p.id) or {}
        rows.append({
            "pod": p,
            "usage": u,
            "cpu_pct_limit": u.get("cpu_percent_of_limit"),
            "memory_pct_limit": u.get("memory_percent_of_limit"),
            "phase": getattr(p, PHASE_FIELD, None),
            "kind": getattr(p, kind, None) if kind else None,
            "restarts": getattr(p, restarts, None) if restarts else None,
        })
    return rows, total


def pod_filter_choices(fixed: dict[str, str]) -> dict[str, Any]:
    """The values the filter menus offer: distinct values of the inventory (a small table)."""
    qs = Pod.objects.all()
    for k, v in fixed.items():
        qs = qs.filter(**({"node__name": v} if k == "node" else {k: v}))
    choices: dict[str, Any] = {
        "namespaces": list(qs.values_list("namespace", flat=True).distinct().order_by("namespace")),
        "nodes": list(qs.values_list("node__name", flat=True).distinct().order_by("node__name")),
        "phases": None,
        "kinds": None,
    }
    if has_field(PHASE_FIELD):
        choices["phases"] = [v for v in qs.values_list(PHASE_FIELD, flat=True).distinct().order_by(PHASE_FIELD) if v]
    kind = kind_field()
    if kind:
        choices["kinds"] = [v for v in qs.values_list(kind, flat=True).distinct().order_by(kind) if v]
    return choices
