"""`/api/clusters/`, `/api/clusters/{name}/` and the single-cluster `/api/cluster/`.

A cluster is the sum of its nodes (system daemons included) against what they have. When an
installation holds one cluster, every node is that cluster's and the cheaper all-nodes queries
answer; with several, each cluster's answers are restricted to its nodes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from metrics import series
from metrics.api import serializers as s
from metrics.api.views import SERIES_PARAMETERS, ReadViewSet, _format_time, _path_param
from metrics.models import Cluster, Node, Pod


def several_clusters() -> bool:
    return Cluster.objects.all()[:2].count() > 1


def cluster_entity(cluster: Cluster | None, several: bool) -> series.Entity:
    if cluster is None or not several:
        return series.CLUSTER
    return series.Entity("cluster", (cluster.pk,))


def default_cluster() -> Cluster | None:
    """The cluster `/api/cluster/` answers for: CLUSTER_NAME's, else the only one; None when
    there is none yet. Raises Http404 when there are several and none is CLUSTER_NAME's."""
    found = Cluster.objects.filter(name=settings.CLUSTER_NAME).first()
    if found is not None:
        return found
    clusters = list(Cluster.objects.order_by("name")[:11])
    if len(clusters) > 1:
        names = ", ".join(c.name for c in clusters[:10])
        raise Http404(f"No cluster named CLUSTER_NAME={settings.CLUSTER_NAME!r}; use /api/clusters/<name>/ ({names}).")
    return clusters[0] if clusters else None


def cluster_item(
    cluster: Cluster | None, window: series.Window | None, now: datetime, several: bool
) -> dict[str, Any]:
    """Inventory counts, the reporting nodes' capacity, the newest complete minute and, given a
    window, the series of one cluster (None: an installation with no cluster yet)."""
    recent = now - series.LATEST_LOOKBACK
    nodes_qs = Node.objects.all()
    pods_qs = Pod.objects.filter(last_seen__gte=recent)
    if cluster is not None and several:
        nodes_qs = nodes_qs.filter(cluster=cluster)
        pods_qs = pods_qs.filter(node__cluster=cluster)
    nodes = nodes_qs.aggregate(
        nodes=Count("id"),
        reporting=Count("id", filter=Q(last_seen__gte=recent)),
        cpu=Sum("cpu_capacity_cores", filter=Q(last_seen__gte=recent)),
        memory=Sum("memory_total_bytes", filter=Q(last_seen__gte=recent)),
    )
    entity = cluster_entity(cluster, several)
    item: dict[str, Any] = {
        "name": cluster.name if cluster is not None else settings.CLUSTER_NAME,
        "nodes": nodes["nodes"],
        "nodes_reporting": nodes["reporting"],
        # last_seen of a pod lags by up to a minute (metrics.models.Pod).
        "pods": pods_qs.count(),
        "cpu_capacity_millicores": None if nodes["cpu"] is None else nodes["cpu"] * 1000.0,
        "memory_capacity_bytes": nodes["memory"],
        "usage": series.latest_cluster(now, entity) if nodes["nodes"] else None,
    }
    if window is not None:
        points = series.series(entity, window, now=now)
        for point in points:
            point["time"] = _format_time(point["time"])
        item["series"] = {
            "start": _format_time(window.start), "end": _format_time(window.end),
            "step": window.step, "source": window.source, "points": points,
        }
    return item


@extend_schema_view(
    list=extend_schema(
        summary="The cluster (CLUSTER_NAME's, or the only one): its nodes' newest usage, capacity and a series",
        parameters=SERIES_PARAMETERS,
        responses=s.ClusterSerializer,
    ),
)
class ClusterViewSet(ReadViewSet):
    """One cluster: the sum of its nodes (system daemons included). With several clusters, the
    one named CLUSTER_NAME; see /api/clusters/ for every cluster."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = s.ClusterSerializer
    # Nothing is listed from it; the schema generator asks for a model.
    queryset = Node.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        window = self.series_window(request)
        cluster = default_cluster()
        item = cluster_item(cluster, window, timezone.now(), several_clusters())
        return Response(self.get_serializer_class()(item, context=self.get_serializer_context()).data)


@extend_schema_view(
    list=extend_schema(summary="Clusters with their nodes' newest usage and capacity"),
    retrieve=extend_schema(
        summary="A cluster, with a series when window or start is given",
        parameters=[_path_param("cluster", "Cluster name"), *SERIES_PARAMETERS],
    ),
)
class ClustersViewSet(ReadViewSet):
    """Every cluster, each the sum of its own nodes; see `/api/cluster/` for a single cluster."""

    queryset = Cluster.objects.all()
    serializer_class = s.ClusterItemSerializer
    lookup_field = "name"
    lookup_url_kwarg = "cluster"

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = list(self.paginate_queryset(self.filter_queryset(self.get_queryset())) or [])
        now = timezone.now()
        several = several_clusters()
        items = [cluster_item(c, None, now, several) for c in page]
        data = self.get_serializer_class()(items, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        window = self.series_window(request)
        cluster = self.get_object()
        item = cluster_item(cluster, window, timezone.now(), several_clusters())
        return Response(self.get_serializer_class()(item, context=self.get_serializer_context()).data)
