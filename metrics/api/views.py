"""Read viewsets: nodes, pods, namespaces and Deployments, each with latest usage and series.

Namespaces and Deployments have no tables: they are the distinct values in the Pod inventory.
The time-series and latest-usage queries live in metrics.series.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db.models import Case, Count, Max, Min, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from metrics import series, serving, telemetry
from metrics.api import serializers as s
from metrics.api.filters import PodFilterSet, model_server_param
from metrics.api.pagination import NameCursorPagination
from metrics.auth import ApiTokenAuthentication, CanRead
from metrics.replica import reading_from_replica
from metrics.models import Container, Node, Pod

# Names may hold dots (node names usually do); only the slash separates path segments.
# No NUL: ingest never stores one (PostgreSQL text cannot hold it), so such a name is a 404 at
# the router instead of a database error.
NAME_REGEX = r"[^/\x00]+"

SERIES_PARAMETERS = [
    OpenApiParameter(
        "window", OpenApiTypes.INT,
        description="Return a series over the last `window` seconds (not with start/end).",
    ),
    OpenApiParameter(
        "start", OpenApiTypes.DATETIME, description="Series start, RFC 3339 (end defaults to now)."
    ),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Series end, RFC 3339; needs start."),
    OpenApiParameter(
        "step", OpenApiTypes.INT,
        description="Bucket length in seconds; multiples of 3600 read the 1-hour rollups, multiples "
        "of 60 the 1-minute rollups, others raw samples. Default: a step giving at most ~300 points.",
    ),
]


def _path_param(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.PATH, description=description)


def _format_time(t: datetime) -> str:
    return t.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")


class ReadViewSet(viewsets.GenericViewSet):
    """Shared by every read endpoint: auth, cursor pagination, latest usage and series."""

    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [CanRead]
    pagination_class = NameCursorPagination
    lookup_value_regex = NAME_REGEX
    cursor_ordering: tuple[str, ...] = ("name",)
    detail_serializer_class: type | None = None

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            # Inventory and sample reads go to READ_DATABASE_URL's replica when there is one.
            with reading_from_replica():
                return super().dispatch(request, *args, **kwargs)
        finally:
            # basename and action name the endpoint (node-list, pod-detail, ...), never the path,
            # so the histogram's series stay few whatever names are asked for.
            telemetry.observe_read(f"{self.basename}-{self.action or 'other'}", time.perf_counter() - started)

    # Hooks per resource.
    def usage_for(self, items: list[Any]) -> dict[Any, dict[str, Any]]:
        raise NotImplementedError

    def entity_for(self, item: Any) -> series.Entity:
        raise NotImplementedError

    def get_serializer_class(self) -> type:
        if self.action == "retrieve" and self.detail_serializer_class is not None:
            return self.detail_serializer_class
        return super().get_serializer_class()

    def list_items(self, request: Request) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = list(self.paginate_queryset(queryset) or [])
        context = self.get_serializer_context() | {"usage": self.usage_for(page)}
        data = self.get_serializer_class()(page, many=True, context=context).data
        return self.get_paginated_response(data)

    def retrieve_item(self, request: Request) -> Response:
        # Parameters first: a bad window is a 400 even for a name that does not exist.
        window = self.series_window(request)
        item = self.get_object()
        context = self.get_serializer_context() | {"usage": self.usage_for([item])}
        if window is not None:
            points = series.series(self.entity_for(item), window)
            for point in points:
                point["time"] = _format_time(point["time"])
            context["series"] = {
                "start": _format_time(window.start),
                "end": _format_time(window.end),
                "step": window.step,
                "source": window.source,
                "points": points,
            }
        return Response(self.get_serializer_class()(item, context=context).data)

    def series_window(self, request: Request, source: str | None = None) -> series.Window | None:
        params = s.SeriesParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        if not values.keys() & {"window", "start", "end"}:
            if "step" in values:
                raise ValidationError({"step": ["Needs window or start."]})
            return None
        try:
            return series.resolve_window(
                window=values.get("window"),
                start=values.get("start"),
                end=values.get("end"),
                step=values.get("step"),
                source=source,
            )
        except series.SeriesError as exc:
            raise ValidationError({exc.param: [exc.message]}) from exc


class ListMixin:
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list_items(request)  # type: ignore[attr-defined]


class RetrieveMixin:
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.retrieve_item(request)  # type: ignore[attr-defined]


# --- Nodes ---------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Nodes with their newest usage"),
    retrieve=extend_schema(
        summary="A node, with a series when window or start is given",
        parameters=[_path_param("node", "Node name"), *SERIES_PARAMETERS],
    ),
)
class NodeViewSet(ListMixin, RetrieveMixin, ReadViewSet):
    queryset = Node.objects.all()
    serializer_class = s.NodeSerializer
    detail_serializer_class = s.NodeDetailSerializer
    lookup_field = "name"
    lookup_url_kwarg = "node"

    def usage_for(self, items: list[Node]) -> dict[Any, dict[str, Any]]:
        return series.latest_nodes([n.pk for n in items])

    def entity_for(self, item: Node) -> series.Entity:
        return series.Entity("node", (item.pk,))


# --- Pods ----------------------------------------------------------------------------------------


class PodListViewSet(ListMixin, ReadViewSet):
    """Pods, narrowed by the path (node, namespace, Deployment) and by PodFilterSet."""

    queryset = Pod.objects.select_related("node")
    serializer_class = s.PodSerializer
    detail_serializer_class = s.PodDetailSerializer
    filterset_class = PodFilterSet
    # Pod names are nearly unique across namespaces; the id breaks the rare tie.
    cursor_ordering = ("name", "id")
    lookup_url_kwarg = "pod"

    def get_queryset(self) -> QuerySet[Pod]:
        qs = super().get_queryset()
        if "node" in self.kwargs:
            node = Node.objects.filter(name=self.kwargs["node"]).first()
            if node is None:
                raise Http404("No such node.")
            qs = qs.filter(node=node)
        if "namespace" in self.kwargs:
            qs = qs.filter(namespace=self.kwargs["namespace"])
        if "deployment" in self.kwargs:
            qs = qs.filter(deployment=self.kwargs["deployment"])
            if self.action == "list" and not qs.exists():
                raise Http404("No such Deployment.")
        elif "namespace" in self.kwargs and self.action == "list" and not qs.exists():
            raise Http404("No such namespace.")
        return qs

    def usage_for(self, items: list[Pod]) -> dict[Any, dict[str, Any]]:
        return series.latest_pods(items)

    def entity_for(self, item: Pod) -> series.Entity:
        return series.Entity(
            "pod", (item.pk,), item.node.cpu_capacity_cores, item.node.memory_total_bytes
        )


@extend_schema_view(
    list=extend_schema(summary="Pods of every namespace, with their newest usage"),
    retrieve=extend_schema(
        summary="A pod by name; give namespace when the name exists in several namespaces",
        parameters=[
            _path_param("pod", "Pod name"),
            OpenApiParameter("namespace", OpenApiTypes.STR, description="The pod's namespace."),
            *SERIES_PARAMETERS,
        ],
    ),
)
class PodViewSet(RetrieveMixin, PodListViewSet):
    def get_object(self) -> Pod:
        qs = self.get_queryset().filter(name=self.kwargs["pod"])
        namespace = self.kwargs.get("namespace") or self.request.query_params.get("namespace")
        if namespace:
            qs = qs.filter(namespace=namespace)
        else:
            namespaces = sorted(set(qs.values_list("namespace", flat=True)[:20]))
            if len(namespaces) > 1:
                raise ValidationError(
                    {"namespace": [f"Pod {self.kwargs['pod']!r} exists in namespaces "
                                   f"{', '.join(namespaces)}; give ?namespace=."]}
                )
        # A StatefulSet pod keeps its name when recreated: the newest incarnation answers.
        pod = qs.order_by("-last_seen", "-id").first()
        if pod is None:
            raise Http404("No such pod.")
        self.check_object_permissions(self.request, pod)
        return pod


@extend_schema_view(
    list=extend_schema(
        summary="Pods on a node, with their newest usage", parameters=[_path_param("node", "Node name")]
    ),
)
class NodePodViewSet(PodListViewSet):
    pass


@extend_schema_view(
    list=extend_schema(
        summary="Pods of a namespace, with their newest usage",
        parameters=[_path_param("namespace", "Namespace name")],
    ),
    retrieve=extend_schema(
        summary="A pod of a namespace, with a series when window or start is given",
        parameters=[
            _path_param("namespace", "Namespace name"), _path_param("pod", "Pod name"),
            *SERIES_PARAMETERS,
        ],
    ),
)
class NamespacePodViewSet(PodViewSet):
    pass


@extend_schema_view(
    list=extend_schema(
        summary="Pods of a Deployment, with their newest usage",
        parameters=[
            _path_param("namespace", "Namespace name"), _path_param("deployment", "Deployment name"),
        ],
    ),
)
class DeploymentPodViewSet(PodListViewSet):
    pass


# --- Namespaces and Deployments (derived from the Pod inventory) --------------------------------


@extend_schema_view(
    list=extend_schema(summary="Namespaces with their newest complete minute of usage"),
    retrieve=extend_schema(
        summary="A namespace, with a series when window or start is given",
        parameters=[_path_param("namespace", "Namespace name"), *SERIES_PARAMETERS],
    ),
)
class NamespaceViewSet(ListMixin, RetrieveMixin, ReadViewSet):
    queryset = Pod.objects.all()
    serializer_class = s.NamespaceSerializer
    detail_serializer_class = s.NamespaceDetailSerializer
    cursor_ordering = ("namespace",)
    lookup_url_kwarg = "namespace"

    def get_queryset(self) -> QuerySet:
        return (
            Pod.objects.values("namespace")
            .annotate(
                pods=Count("id"),
                deployments=Count("deployment", distinct=True),
                first_seen=Min("first_seen"),
                last_seen=Max("last_seen"),
            )
            .order_by("namespace")
        )

    def get_object(self) -> dict[str, Any]:
        item = self.get_queryset().filter(namespace=self.kwargs["namespace"]).first()
        if item is None:
            raise Http404("No such namespace.")
        return item

    def usage_for(self, items: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        return series.latest_groups("namespace", [(i["namespace"],) for i in items])

    def entity_for(self, item: dict[str, Any]) -> series.Entity:
        return series.Entity("namespace", (item["namespace"],))


class DeploymentListViewSet(ListMixin, ReadViewSet):
    queryset = Pod.objects.all()
    serializer_class = s.DeploymentSerializer
    detail_serializer_class = s.DeploymentDetailSerializer
    cursor_ordering = ("deployment", "namespace")
    lookup_url_kwarg = "deployment"

    def get_queryset(self) -> QuerySet:
        qs = Pod.objects.filter(deployment__isnull=False).exclude(deployment="")
        if "namespace" in self.kwargs:
            qs = qs.filter(namespace=self.kwargs["namespace"])
        model_server = model_server_param(self.request.query_params)
        if model_server is not None:  # Deployments with pods serving a model with that server
            qs = qs.filter(model_server=model_server)
        return (
            qs.values("namespace", "deployment")
            .annotate(pods=Count("id"), first_seen=Min("first_seen"), last_seen=Max("last_seen"))
            .order_by("deployment", "namespace")
        )

    def usage_for(self, items: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        return series.latest_groups("deployment", [(i["namespace"], i["deployment"]) for i in items])

    def entity_for(self, item: dict[str, Any]) -> series.Entity:
        return series.Entity("deployment", (item["namespace"], item["deployment"]))


MODEL_SERVER_PARAMETER = OpenApiParameter(
    "model_server", OpenApiTypes.STR, enum=["vllm", "sglang"],
    description="Only Deployments whose pods serve a model with this server.",
)


@extend_schema_view(
    list=extend_schema(summary="Deployments of every namespace", parameters=[MODEL_SERVER_PARAMETER])
)
class DeploymentViewSet(DeploymentListViewSet):
    pass


@extend_schema_view(
    list=extend_schema(
        summary="Deployments of a namespace",
        parameters=[_path_param("namespace", "Namespace name"), MODEL_SERVER_PARAMETER],
    ),
    retrieve=extend_schema(
        summary="A Deployment, with a series when window or start is given",
        parameters=[
            _path_param("namespace", "Namespace name"), _path_param("deployment", "Deployment name"),
            *SERIES_PARAMETERS,
        ],
    ),
)
class NamespaceDeploymentViewSet(RetrieveMixin, DeploymentListViewSet):
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not Pod.objects.filter(namespace=self.kwargs["namespace"]).exists():
            raise Http404("No such namespace.")
        return super().list(request, *args, **kwargs)

    def get_object(self) -> dict[str, Any]:
        item = self.get_queryset().filter(deployment=self.kwargs["deployment"]).first()
        if item is None:
            raise Http404("No such Deployment.")
        return item


# --- Many series in one request ------------------------------------------------------------------

MAX_SERIES = 200


@extend_schema_view(
    list=extend_schema(
        summary="The series of many entities of one kind in one request",
        parameters=[
            OpenApiParameter(
                "kind", OpenApiTypes.STR, required=True, enum=["node", "pod", "namespace", "deployment"]
            ),
            OpenApiParameter(
                "name", OpenApiTypes.STR, many=True,
                description="Names to include (repeat the parameter); default: every entity of the kind "
                "within namespace / node, at most 200.",
            ),
            OpenApiParameter(
                "namespace", OpenApiTypes.STR,
                description="Required for pods; for Deployments optional (without it: every namespace's).",
            ),
            OpenApiParameter("node", OpenApiTypes.STR, description="For pods: only those on this node."),
            OpenApiParameter(
                "fields", OpenApiTypes.STR,
                description="Point fields to return, comma-separated (e.g. cpu_millicores,memory_working_set_bytes); "
                "default every field. `time` and `coverage` are always there. Fewer fields read and send less.",
            ),
            *SERIES_PARAMETERS,
        ],
        responses=s.ManySeriesSerializer,
    ),
)
class SeriesViewSet(ReadViewSet):
    """`/api/series/?kind=deployment&namespace=shop&window=86400`: every Deployment of a namespace,
    one query per request for the sums, not one request per entity."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = s.ManySeriesSerializer
    queryset = Node.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        kind = request.query_params.get("kind")
        if kind not in ("node", "pod", "namespace", "deployment"):
            raise ValidationError({"kind": ["Must be one of node, pod, namespace, deployment."]})
        window = self.series_window(request)
        if window is None:
            raise ValidationError({"window": ["Give window or start (and end)."]})
        names = request.query_params.getlist("name")
        if any("\x00" in n for n in names):
            raise ValidationError({"name": ["Must not contain NUL."]})
        fields = _point_fields(request.query_params.getlist("fields"))
        items = _series_entities(kind, names, request.query_params)
        if len(items) > MAX_SERIES:
            raise ValidationError({"name": [f"At most {MAX_SERIES} entities per request; narrow it down."]})
        all_points = series.series_many([e for _, e in items], window, fields=fields) if items else []
        out = []
        for (labels, _), points in zip(items, all_points):
            for point in points:
                point["time"] = _format_time(point["time"])
            out.append({**labels, "points": points})
        data = {
            "kind": kind, "start": _format_time(window.start), "end": _format_time(window.end),
            "step": window.step, "source": window.source, "series": out,
        }
        # Plain JSON values, as the details' series (ManySeriesSerializer documents the shape):
        # 50 series of a day through the serializer cost more than computing them.
        return Response(data)

def _point_fields(values: list[str]) -> tuple[str, ...] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        return None
    known = {f.name for f in series.POINTS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValidationError({"fields": [f"Unknown point field(s): {', '.join(unknown)}."]})
    return tuple(dict.fromkeys(n for n in names if n != "coverage"))


def _series_entities(kind: str, names: list[str], params: Any) -> list[tuple[dict[str, Any], series.Entity]]:
    namespace = params.get("namespace")
    limit = MAX_SERIES + 1
    if kind == "node":
        nodes = Node.objects.order_by("name")
        if names:
            nodes = nodes.filter(name__in=names)
        return [({"name": n.name}, series.Entity("node", (n.pk,))) for n in nodes[:limit]]
    if kind == "namespace":
        found = Pod.objects.values_list("namespace", flat=True).distinct().order_by("namespace")
        if names:
            found = found.filter(namespace__in=names)
        return [({"name": ns}, series.Entity("namespace", (ns,))) for ns in found[:limit]]
    if kind == "deployment" and namespace is None:
        # Every Deployment of every namespace (alert evaluation, a cluster-wide table).
        pairs = (
            Pod.objects.filter(deployment__isnull=False).exclude(deployment="")
            .values_list("namespace", "deployment").distinct().order_by("namespace", "deployment")
        )
        if names:
            pairs = pairs.filter(deployment__in=names)
        return [
            ({"namespace": ns, "name": d}, series.Entity("deployment", (ns, d))) for ns, d in pairs[:limit]
        ]
    if namespace is None:
        raise ValidationError({"namespace": [f"Required for kind={kind}."]})
    if kind == "deployment":
        deps = (
            Pod.objects.filter(namespace=namespace, deployment__isnull=False).exclude(deployment="")
            .values_list("deployment", flat=True).distinct().order_by("deployment")
        )
        if names:
            deps = deps.filter(deployment__in=names)
        return [
            ({"namespace": namespace, "name": d}, series.Entity("deployment", (namespace, d)))
            for d in deps[:limit]
        ]
    pods = Pod.objects.filter(namespace=namespace).select_related("node").order_by("name", "id")
    if params.get("node"):
        pods = pods.filter(node__name=params["node"])
    if names:
        pods = pods.filter(name__in=names)
    return [
        (
            {"namespace": namespace, "name": p.name, "uid": p.uid},
            series.Entity("pod", (p.pk,), p.node.cpu_capacity_cores, p.node.memory_total_bytes),
        )
        for p in pods[:limit]
    ]


# --- Containers of a pod -------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Containers of a pod, with newest usage and, given window or start, their series",
        parameters=[
            _path_param("namespace", "Namespace name"), _path_param("pod", "Pod name"),
            *SERIES_PARAMETERS,
        ],
        responses=s.ContainerUsageSerializer(many=True),
    ),
)
class PodContainerViewSet(ReadViewSet):
    """Containers have raw samples only: any step is served from them, within RETENTION_RAW_DAYS.
    The pause container is never stored (the collector recognises it), and network is counted on
    the pod, whose network namespace its containers share."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = s.ContainerUsageSerializer
    queryset = Container.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        window = self.series_window(request, source="raw")
        pod = (
            Pod.objects.filter(namespace=self.kwargs["namespace"], name=self.kwargs["pod"])
            .order_by("-last_seen", "-id").first()
        )
        if pod is None:
            raise Http404("No such pod.")
        containers = list(Container.objects.filter(pod=pod).order_by("name"))
        usage = series.latest_containers([c.pk for c in containers])
        all_points: list[list[dict[str, Any]]] = []
        if window is not None and containers:
            all_points = series.series_many([series.Entity("container", (c.pk,)) for c in containers], window)
        out = []
        for i, c in enumerate(containers):
            item: dict[str, Any] = {
                "name": c.name, "container_id": c.container_id, "image": c.image,
                "ready": c.ready, "state": c.state, "state_reason": c.state_reason,
                "last_termination_reason": c.last_termination_reason,
                "last_termination_time": c.last_termination_time,
                "first_seen": c.first_seen, "last_seen": c.last_seen, "usage": usage.get(c.pk),
            }
            if window is not None:
                for point in all_points[i]:
                    point["time"] = _format_time(point["time"])
                item["series"] = {
                    "start": _format_time(window.start), "end": _format_time(window.end),
                    "step": window.step, "source": window.source, "points": all_points[i],
                }
            out.append(item)
        return Response(self.get_serializer_class()(out, many=True).data)


# --- Model servers (vLLM / SGLang) ---------------------------------------------------------------

MODEL_SERVER_FILTERS = [
    OpenApiParameter("model_server", OpenApiTypes.STR, enum=["vllm", "sglang"]),
]


class ModelServerListViewSet(ListMixin, ReadViewSet):
    """One row per serving Deployment or standalone pod, from the Pod inventory (pods the
    collector confirmed as vLLM or SGLang servers), with the replicas' newest figures."""

    queryset = Pod.objects.none()
    serializer_class = s.ModelServerSerializer
    detail_serializer_class = s.ModelServerDetailSerializer
    cursor_ordering = ("server", "namespace", "kind")
    lookup_url_kwarg = "server"

    def servers(self) -> QuerySet:
        qs = Pod.objects.filter(model_server__isnull=False)
        namespace = self.kwargs.get("namespace") or self.request.query_params.get("namespace")
        if namespace:
            qs = qs.filter(namespace=namespace)
        model_server = model_server_param(self.request.query_params)
        if model_server is not None:
            qs = qs.filter(model_server=model_server)
        return qs.annotate(
            kind=Case(
                When(Q(deployment__isnull=False) & ~Q(deployment=""), then=Value("deployment")),
                default=Value("pod"),
            ),
            server=Coalesce(NullIf("deployment", Value("")), "name"),
        )

    def get_queryset(self) -> QuerySet:
        recent = timezone.now() - series.LATEST_LOOKBACK
        return (
            self.servers().values("namespace", "kind", "server")
            .annotate(
                pods=Count("id"), replicas=Count("id", filter=Q(last_seen__gte=recent)),
                server_kind=Max("model_server"), model=Max("model_name"),
                first_seen=Min("first_seen"), last_seen=Max("last_seen"),
            )
            .order_by("server", "namespace", "kind")
        )

    def usage_for(self, items: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        if not items:
            return {}
        wanted = {(i["namespace"], i["kind"], i["server"]) for i in items}
        pods = self.servers().filter(
            namespace__in={i["namespace"] for i in items}, server__in={i["server"] for i in items}
        ).values_list("id", "namespace", "kind", "server")
        members: dict[tuple[str, str, str], list[int]] = {}
        for pod_id, namespace, kind, name in pods:
            if (namespace, kind, name) in wanted:
                members.setdefault((namespace, kind, name), []).append(pod_id)
        latest = serving.latest_by_pod([p for ids in members.values() for p in ids])
        return {
            key: serving.summary([latest[p] for p in members.get(key, []) if p in latest])
            for key in wanted
        }


@extend_schema_view(
    list=extend_schema(
        summary="Model servers (vLLM / SGLang): one per serving Deployment or standalone pod",
        parameters=[
            OpenApiParameter("namespace", OpenApiTypes.STR, description="Only this namespace."),
            *MODEL_SERVER_FILTERS,
        ],
    ),
)
class ModelServerViewSet(ModelServerListViewSet):
    pass


@extend_schema_view(
    list=extend_schema(
        operation_id="model_servers_namespace_list",
        summary="Model servers of a namespace",
        parameters=[_path_param("namespace", "Namespace name"), *MODEL_SERVER_FILTERS],
    ),
    retrieve=extend_schema(
        operation_id="model_servers_namespace_retrieve",
        summary="A model server, with a series (raw samples or rollups, by step) when window or start is given",
        parameters=[
            _path_param("namespace", "Namespace name"),
            _path_param("server", "Deployment name, or pod name with kind=pod"),
            OpenApiParameter(
                "kind", OpenApiTypes.STR, enum=["deployment", "pod"],
                description="A standalone pod named like a Deployment of the namespace: kind=pod.",
            ),
            *SERIES_PARAMETERS,
        ],
    ),
)
class NamespaceModelServerViewSet(RetrieveMixin, ModelServerListViewSet):
    def get_object(self) -> dict[str, Any]:
        kind = self.request.query_params.get("kind")
        if kind not in (None, "deployment", "pod"):
            raise ValidationError({"kind": ["Must be deployment or pod."]})
        qs = self.get_queryset().filter(server=self.kwargs["server"])
        if kind:
            qs = qs.filter(kind=kind)
        item = qs.order_by("kind").first()  # "deployment" before "pod"
        if item is None:
            raise Http404("No such model server.")
        return item

    def retrieve_item(self, request: Request) -> Response:
        window = self.series_window(request)
        item = self.get_object()
        context = self.get_serializer_context() | {"usage": self.usage_for([item])}
        if window is not None:
            points = serving.server_series(serving.Server(item["namespace"], item["server"], item["kind"]), window)
            for point in points:
                point["time"] = _format_time(point["time"])
            context["series"] = {
                "start": _format_time(window.start), "end": _format_time(window.end),
                "step": window.step, "source": window.source, "points": points,
            }
        return Response(self.get_serializer_class()(item, context=context).data)
