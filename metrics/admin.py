"""The Django admin: inventory, tokens, and read-only views of the sample hypertables.

The sample tables hold millions of rows, so their admin pages must not issue the queries the
admin issues by default: COUNT(*) for the paginator and the "N total" line, SELECT DISTINCT over
the table for value filters and the date hierarchy, and a <select> of every related row.
The sample columns listed are the catalogue's (metrics/catalogue.py, Metric.sample_field).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from metrics import catalogue
from metrics.models import (
    ApiToken,
    Cluster,
    Container,
    ContainerSample,
    Node,
    NodeSample,
    Pod,
    PodSample,
    ServingSample,
    RollupPoisonedBucket,
)
from metrics.tokens import create_token

# --- helpers for hypertables -------------------------------------------------------------------

# The paginator looks this many rows ahead instead of counting: page links reach at most
# BOUNDED_COUNT / list_per_page pages, which nobody clicks through anyway.
BOUNDED_COUNT = 10_000


class BoundedCountPaginator(Paginator):
    """Counts at most BOUNDED_COUNT rows with an index-ordered LIMIT query, never COUNT(*)."""

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        ids = self.object_list.values_list("pk", flat=True)[:BOUNDED_COUNT]  # type: ignore[attr-defined]
        return len(list(ids))


class CalendarQuerySet(QuerySet):
    """`datetimes()` from MIN/MAX(time) (two index probes) instead of SELECT DISTINCT over all rows.

    The date hierarchy may then offer a day without samples; clicking it shows an empty page.
    """

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None, **kw: Any) -> list[datetime]:  # type: ignore[override]
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if not bounds["first"]:
            return []
        first, last = (timezone.localtime(bounds[k]) for k in ("first", "last"))
        result = []
        moment = _truncate(first, kind)
        while moment <= last:
            result.append(moment)
            moment = _next(moment, kind)
        return result if order == "ASC" else result[::-1]


def _truncate(moment: datetime, kind: str) -> datetime:
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("month", "year"):
        moment = moment.replace(day=1)
    if kind == "year":
        moment = moment.replace(month=1)
    return moment


def _next(moment: datetime, kind: str) -> datetime:
    if kind == "day":
        return moment + timedelta(days=1)
    if kind == "month":
        return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)
    return moment.replace(year=moment.year + 1)


class InventoryFilter(admin.SimpleListFilter):
    """A filter whose choices come from the small inventory tables, never from the samples."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and "\x00" in value:
            # No stored name holds NUL (ingest refuses it) and PostgreSQL text cannot: nothing matches.
            return queryset.none()
        return self.filter_samples(queryset, value) if value else queryset

    def filter_samples(self, queryset: QuerySet, value: str) -> QuerySet:
        raise NotImplementedError


def _has_field(model: type[Model], name: str) -> bool:
    return any(f.attname == name or f.name == name for f in model._meta.concrete_fields)


def _pods_where(queryset: QuerySet, **lookup: Any) -> QuerySet:
    # Containers and their samples carry only the pod; filter them by the pods the inventory
    # matches.
    if not all(_has_field(queryset.model, name.split("__")[0]) for name in lookup):
        return queryset.filter(pod_id__in=Pod.objects.filter(**lookup).values("id"))
    return queryset.filter(**lookup)


class NodeFilter(InventoryFilter):
    title = "node"
    parameter_name = "node"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in Node.objects.values_list("pk", "name")[:500]]

    def filter_samples(self, queryset: QuerySet, value: str) -> QuerySet:
        if not value.isdigit():  # a hand-edited URL: node ids are numbers
            return queryset.none()
        return _pods_where(queryset, node_id=value)


class NamespaceFilter(InventoryFilter):
    title = "namespace"
    parameter_name = "namespace"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = Pod.objects.order_by("namespace").values_list("namespace", flat=True).distinct()
        return [(n, n) for n in names[:500]]

    def filter_samples(self, queryset: QuerySet, value: str) -> QuerySet:
        return _pods_where(queryset, namespace=value)


class DeploymentFilter(InventoryFilter):
    title = "Deployment"
    parameter_name = "deployment"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        pairs = (
            Pod.objects.exclude(deployment__isnull=True)
            .order_by("namespace", "deployment")
            .values_list("namespace", "deployment")
            .distinct()
        )
        return [(f"{ns}/{dep}", f"{ns}/{dep}") for ns, dep in pairs[:500]]

    def filter_samples(self, queryset: QuerySet, value: str) -> QuerySet:
        namespace, _, deployment = value.partition("/")
        return _pods_where(queryset, namespace=namespace, deployment=deployment)


class SampleAdmin(admin.ModelAdmin):
    """Read-only, no COUNT(*), no DISTINCT scans, ordered by the time index."""

    paginator = BoundedCountPaginator
    show_full_result_count = False
    date_hierarchy = "time"
    ordering = ("-time",)
    list_per_page = 100
    search_help_text = "Node name (pods: also pod name)"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        return CalendarQuerySet(model=qs.model, query=qs.query, using=qs.db)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Match names in the inventory first and filter the samples by id: an ILIKE joined
        # against the samples would scan the whole table.
        term = search_term.strip()
        if not term:
            return queryset, False
        return self.search_samples(queryset, term), False

    def search_samples(self, queryset: QuerySet, term: str) -> QuerySet:
        raise NotImplementedError

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def _node_ids(term: str) -> QuerySet:
    return Node.objects.filter(name__icontains=term).values("id")


def _pod_ids(term: str) -> QuerySet:
    return Pod.objects.filter(name__icontains=term).values("id")


@admin.register(NodeSample)
class NodeSampleAdmin(SampleAdmin):
    list_display = ("time", "node", "interval_seconds", *catalogue.sample_fields("node"))
    list_select_related = ("node",)
    list_filter = (NodeFilter,)
    raw_id_fields = ("node",)
    search_fields = ("node__name",)

    def search_samples(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(node_id__in=_node_ids(term))


@admin.register(PodSample)
class PodSampleAdmin(SampleAdmin):
    list_display = (
        "time", "pod", "namespace", "deployment", "node", "interval_seconds", *catalogue.sample_fields("pod"),
    )
    list_select_related = ("pod", "node")
    list_filter = (NodeFilter, NamespaceFilter, DeploymentFilter)
    raw_id_fields = ("pod", "node")
    search_fields = ("pod__name", "node__name")

    def search_samples(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(pod_id__in=_pod_ids(term)) | queryset.filter(node_id__in=_node_ids(term))


@admin.register(ContainerSample)
class ContainerSampleAdmin(SampleAdmin):
    list_display = ("time", "container", "interval_seconds", *catalogue.sample_fields("container"), "restarts")
    list_select_related = ("container", "container__pod")
    list_filter = (NodeFilter, NamespaceFilter, DeploymentFilter)
    raw_id_fields = ("container", "pod")
    search_fields = ("pod__name",)
    search_help_text = "Pod name"

    def search_samples(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(pod_id__in=_pod_ids(term))


class ModelServerFilter(admin.SimpleListFilter):
    title = "model server"
    parameter_name = "model_server"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("vllm", "vLLM"), ("sglang", "SGLang")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(model_server=value) if value in ("vllm", "sglang") else queryset


@admin.register(ServingSample)
class ServingSampleAdmin(SampleAdmin):
    """Model servers' samples, filterable by server kind, namespace and Deployment."""

    list_display = (
        "time", "pod", "namespace", "deployment", "model_server", "model_name", "interval_seconds",
        "generation_tokens", "prompt_tokens", "requests_running", "requests_waiting",
        "kv_cache_usage_percent", "ttft_p95_seconds", "restarted",
    )
    list_select_related = ("pod",)
    list_filter = (ModelServerFilter, NodeFilter, NamespaceFilter, DeploymentFilter)
    raw_id_fields = ("pod", "node")
    search_fields = ("pod__name",)
    search_help_text = "Pod name"

    def search_samples(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(pod_id__in=_pod_ids(term))


# --- inventory ---------------------------------------------------------------------------------


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    """Renaming a cluster is safe (nodes and tokens refer to it by id); deleting one is refused
    while nodes or tokens belong to it."""

    list_display = ("name", "node_count", "created")
    search_fields = ("name",)
    readonly_fields = ("created",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Counted over the node inventory, never over samples.
        return super().get_queryset(request).annotate(_nodes=Count("nodes"))

    @admin.display(description="nodes", ordering="_nodes")
    def node_count(self, obj: Cluster) -> int:
        return getattr(obj, "_nodes", 0)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "cluster", "cpu_capacity_cores", "memory_total_bytes", "first_seen", "last_seen")
    list_select_related = ("cluster",)
    search_fields = ("name",)
    list_filter = ("cluster", "last_seen")
    date_hierarchy = "last_seen"


@admin.register(Pod)
class PodAdmin(admin.ModelAdmin):
    list_display = ("name", "namespace", "deployment", "node", "qos", "model_server", "model_name", "cpu_limit_cores", "memory_limit_bytes", "last_seen")
    list_select_related = ("node",)
    list_filter = (NodeFilter, ModelServerFilter, "namespace", "deployment", "qos", "last_seen")
    search_fields = ("name", "uid", "namespace", "deployment", "owner_name", "model_name")
    raw_id_fields = ("node",)
    date_hierarchy = "last_seen"


@admin.register(Container)
class ContainerAdmin(admin.ModelAdmin):
    list_display = ("name", "pod", "image", "container_id", "last_seen")
    list_select_related = ("pod",)
    list_filter = (NamespaceFilter, DeploymentFilter, "last_seen")
    search_fields = ("name", "image", "container_id", "pod__name", "pod__namespace")
    raw_id_fields = ("pod",)
    date_hierarchy = "last_seen"


@admin.register(RollupPoisonedBucket)
class RollupPoisonedBucketAdmin(admin.ModelAdmin):
    """Buckets the rollup refresh left empty because their sums overflow (metrics/rollups.py)."""

    list_display = ("bucket", "resolution", "entity", "error", "recorded_at")
    list_filter = ("resolution", "entity")
    readonly_fields = ("resolution", "entity", "bucket", "error", "recorded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# --- tokens ------------------------------------------------------------------------------------


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here (the plaintext is shown once) or with createcollectortoken.

    The digest is never shown: it is useless to an operator and only helps an attacker.
    """

    list_display = ("name", "scope", "cluster", "prefix", "created", "last_used", "revoked")
    list_select_related = ("cluster",)
    list_filter = ("scope", "cluster", ("revoked", admin.EmptyFieldListFilter), "created")
    search_fields = ("name", "prefix")
    date_hierarchy = "created"
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["name", "scope", "cluster"]
        return ["name", "scope", "cluster", "prefix", "created", "last_used", "revoked"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return []
        return ["scope", "prefix", "created", "last_used", "revoked"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, plaintext = create_token(
            obj.name, obj.scope, obj.cluster if obj.scope == ApiToken.Scope.INGEST else None
        )
        obj.pk, obj.prefix, obj.digest, obj.created = token.pk, token.prefix, token.digest, token.created
        messages.warning(
            request,
            f"Copy the token now, it is not shown again: {plaintext}",
        )

    @admin.action(description="Revoke the selected tokens (refused from the next request on)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        # Ingest checks a remembered token against this row on every request
        # (metrics/ingest/auth.py), so the revocation is immediate everywhere.
        self.message_user(
            request,
            f"Revoked {count} token(s). Ingest and reads refuse them from the next request on.",
            messages.SUCCESS,
        )


# GPUs: their admin pages live in metrics/gpu_admin.py (registered on import).
from metrics import gpu_admin  # noqa: E402, F401


# Alerting's admin pages live with alerting; importing them here registers them.
from metrics.alerts import admin as _alerts_admin  # noqa: E402,F401
