"""Right-sizing endpoints (metrics/rightsizing.py has the rule and the queries)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_serializer, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from metrics import rightsizing
from metrics.api.views import ReadViewSet, _path_param
from metrics.models import Pod

_N: dict[str, Any] = {"allow_null": True}


class CpuSizingSerializer(serializers.Serializer):
    p50_millicores = serializers.FloatField(**_N)
    p95_millicores = serializers.FloatField(**_N)
    max_millicores = serializers.FloatField(**_N)
    request_millicores = serializers.FloatField(help_text="Per replica; null when unknown or unset.", **_N)
    limit_millicores = serializers.FloatField(**_N)
    basis = serializers.ChoiceField(
        choices=["request", "limit"], help_text="What the change is measured from: the request, else the limit.", **_N
    )
    p95_percent_of_request = serializers.FloatField(**_N)
    p95_percent_of_limit = serializers.FloatField(**_N)
    max_percent_of_limit = serializers.FloatField(**_N)
    throttled_percent = serializers.FloatField(**_N)
    throttled_basis = serializers.ChoiceField(
        choices=["periods", "cpu_time"],
        help_text="periods: % of CFS periods throttled; cpu_time: throttled CPU time as % of CPU time used.",
    )


class MemorySizingSerializer(serializers.Serializer):
    p50_bytes = serializers.FloatField(**_N)
    p95_bytes = serializers.FloatField(**_N)
    max_bytes = serializers.FloatField(help_text="Largest single working-set sample.", **_N)
    request_bytes = serializers.FloatField(**_N)
    limit_bytes = serializers.FloatField(**_N)
    basis = serializers.ChoiceField(choices=["request", "limit"], **_N)
    p95_percent_of_request = serializers.FloatField(**_N)
    p95_percent_of_limit = serializers.FloatField(**_N)
    max_percent_of_limit = serializers.FloatField(**_N)
    oom_kills = serializers.IntegerField()


class RecommendationSerializer(serializers.Serializer):
    cpu_request_millicores = serializers.FloatField()
    cpu_limit_millicores = serializers.FloatField(help_text="Always null: no CPU limit is recommended.", **_N)
    memory_request_bytes = serializers.FloatField()
    memory_limit_bytes = serializers.FloatField()
    cpu_change_per_replica_millicores = serializers.FloatField(help_text="Negative: frees.", **_N)
    memory_change_per_replica_bytes = serializers.FloatField(**_N)
    cpu_change_millicores = serializers.FloatField(help_text="x replicas: freed (negative) or needed across the cluster.", **_N)
    memory_change_bytes = serializers.FloatField(**_N)


class SizingSerializer(serializers.Serializer):
    replicas = serializers.IntegerField(help_text="Pods running now.")
    minutes = serializers.IntegerField(help_text="Replica-minutes of data in the window.")
    cpu = CpuSizingSerializer()
    memory = MemorySizingSerializer()
    recommendation = RecommendationSerializer(**_N)
    no_recommendation_reason = serializers.CharField(**_N)


class SizingReportSerializer(SizingSerializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["deployment", "pod"])
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    window = serializers.IntegerField()
    requests_recorded = serializers.BooleanField(
        help_text="Whether the inventory records requests; if not, limits are the basis."
    )
    rule = serializers.CharField(help_text="The rule behind the recommendation.")


class WasteItemSerializer(SizingSerializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    waste_share = serializers.FloatField(
        help_text="Share of the cluster's CPU capacity plus share of its memory the recommendation frees."
    )


# A `list` action answering one object, not an array (found by schemathesis).
@extend_schema_serializer(many=False)
class WasteListSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    window = serializers.IntegerField()
    sort = serializers.CharField()
    requests_recorded = serializers.BooleanField()
    rule = serializers.CharField()
    deployments = serializers.IntegerField(help_text="Deployments with data in the window.")
    cpu_freed_millicores = serializers.FloatField(help_text="Over every Deployment, counting only those that free.")
    memory_freed_bytes = serializers.FloatField()
    results = WasteItemSerializer(many=True)


WINDOW_PARAMETER = OpenApiParameter(
    "window", OpenApiTypes.INT,
    description="Seconds back from now (default 86400), at most the 1-minute rollups' retention.",
)


def window_param(request: Request) -> int:
    raw = request.query_params.get("window", str(rightsizing.DEFAULT_WINDOW))
    try:
        window = int(raw)
    except ValueError:
        raise ValidationError({"window": ["Must be a whole number of seconds."]}) from None
    most = settings.RETENTION_1M_DAYS * 86400
    if not 3600 <= window <= most:
        raise ValidationError({"window": [
            f"Must be between 3600 and {most} seconds (the 1-minute rollups' retention, RETENTION_1M_DAYS)."
        ]})
    return window


class _SizingViewSet(ReadViewSet):
    """p50 / p95 / max of the 1-minute averages against requests (or limits) and the
    recommendation, with its rule in the answer; a bad `window` is a 400 naming it."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = SizingReportSerializer
    queryset = Pod.objects.none()

    def pods(self) -> Any:
        raise NotImplementedError

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        window = window_param(request)
        pods, kind, name = self.pods()
        if not pods.exists():
            raise Http404(f"No such {kind}.")
        data = rightsizing.for_pods(pods, window) | {
            "namespace": self.kwargs["namespace"], "name": name, "kind": kind,
        }
        return Response(SizingReportSerializer(data).data)


@extend_schema_view(
    list=extend_schema(
        summary="A Deployment's use against requests and limits, and what to set",
        parameters=[
            _path_param("namespace", "Namespace name"), _path_param("deployment", "Deployment name"),
            WINDOW_PARAMETER,
        ],
        responses=SizingReportSerializer,
    ),
)
class DeploymentSizingViewSet(_SizingViewSet):
    def pods(self) -> Any:
        pods = Pod.objects.filter(namespace=self.kwargs["namespace"], deployment=self.kwargs["deployment"])
        return pods, "deployment", self.kwargs["deployment"]


@extend_schema_view(
    list=extend_schema(
        summary="A pod's use against its requests and limits, and what to set",
        parameters=[_path_param("namespace", "Namespace name"), _path_param("pod", "Pod name"), WINDOW_PARAMETER],
        responses=SizingReportSerializer,
    ),
)
class PodSizingViewSet(_SizingViewSet):
    def pods(self) -> Any:
        newest = (
            Pod.objects.filter(namespace=self.kwargs["namespace"], name=self.kwargs["pod"])
            .order_by("-last_seen", "-id").values_list("id", flat=True).first()
        )
        # A StatefulSet pod keeps its name when recreated: the newest incarnation answers.
        pods = Pod.objects.filter(id=newest) if newest is not None else Pod.objects.none()
        return pods, "pod", self.kwargs["pod"]


@extend_schema_view(
    list=extend_schema(
        summary="Every Deployment's right-sizing, most wasteful first",
        parameters=[
            WINDOW_PARAMETER,
            OpenApiParameter("sort", OpenApiTypes.STR, enum=["share", "cpu", "memory"],
                             description="share (default): of the cluster's CPU plus memory freed; cpu; memory."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many (default 50, at most 500)."),
        ],
        responses=WasteListSerializer,
    ),
)
class WasteListViewSet(ReadViewSet):
    """Every Deployment's right-sizing, sorted by what its recommendation frees."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = WasteListSerializer
    queryset = Pod.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        window = window_param(request)
        sort = request.query_params.get("sort", "share")
        if sort not in ("share", "cpu", "memory"):
            raise ValidationError({"sort": ["Must be share, cpu or memory."]})
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            raise ValidationError({"limit": ["Must be a whole number."]}) from None
        if not 1 <= limit <= 500:
            raise ValidationError({"limit": ["Must be between 1 and 500."]})
        return Response(WasteListSerializer(rightsizing.waste_list(window, sort=sort, limit=limit)).data)
