"""Read API for GPUs: every device with the pod on it and its newest usage, and per-device series.

/api/gpus/                    every device (GPUs and MIG instances), filterable by node, model, MIG
/api/gpus/{uuid}/             one device; ?window= (or start/end, step) adds its series
/api/nodes/{node}/gpus/       the devices of a node; ?window= adds a series to each device
Series come from the catalogue's `gpu` entity (metrics/gpus.py): raw samples for any step, the
per-device 1m / 1h rollups for steps that are multiples of 60 / 3600 s.
"""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from drf_spectacular.types import OpenApiTypes
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from metrics import catalogue, gpus
from metrics.api.views import NAME_REGEX, SERIES_PARAMETERS, ListMixin, ReadViewSet, RetrieveMixin
from metrics.models import GpuDevice, Node

# --- filters ------------------------------------------------------------------------------------


class GpuFilterSet(django_filters.FilterSet):
    node = django_filters.CharFilter(field_name="node__name", label="Node name")
    model = django_filters.CharFilter(field_name="name", label="Model name, e.g. NVIDIA H100 80GB HBM3")
    mig_mode = django_filters.ChoiceFilter(
        choices=[("enabled", "enabled"), ("disabled", "disabled")], label="MIG mode of the GPU"
    )
    mig_instance = django_filters.BooleanFilter(
        method="filter_mig_instance", label="true: only MIG instances; false: only whole GPUs"
    )

    class Meta:
        model = GpuDevice
        fields = ["node", "model", "mig_mode", "mig_instance"]

    def filter_mig_instance(self, qs: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return qs
        return qs.exclude(parent_uuid="") if value else qs.filter(parent_uuid="")


# --- serializers --------------------------------------------------------------------------------


class GpuHolderSerializer(serializers.Serializer):
    uid = serializers.CharField(allow_null=True)
    namespace = serializers.CharField(allow_null=True)
    pod = serializers.CharField(allow_null=True)
    container = serializers.CharField(allow_null=True)
    allocated = serializers.BooleanField(help_text="Allocated to it by the kubelet (pod-resources API).")
    memory_bytes = serializers.IntegerField(allow_null=True, help_text="Device memory its processes hold.")
    utilization_percent = serializers.FloatField(allow_null=True)


def _metric_field(metric: catalogue.Metric) -> serializers.Field:
    kind = serializers.IntegerField if metric.integer else serializers.FloatField
    return kind(allow_null=True, help_text=f"{metric.help} Unit: {metric.unit}.")


class GpuPointSerializer(serializers.Serializer):
    """One bucket of a device's series (or its newest sample, in `usage`): the catalogue's GPU
    device metrics (metrics/catalogue.py, entity `gpu`)."""

    time = serializers.DateTimeField(help_text="Start of the bucket (or of the sample's interval).")
    coverage = serializers.FloatField(allow_null=True, help_text="Share of the bucket the device's samples cover (0-1).")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        coverage = fields.pop("coverage")
        fields.update({m.name: _metric_field(m) for m in catalogue.metrics_of(gpus.KIND)})
        fields["coverage"] = coverage
        return fields


class GpuUsageSerializer(GpuPointSerializer):
    interval_seconds = serializers.FloatField()


class GpuSeriesSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    step = serializers.IntegerField()
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named like Field.source
        choices=["raw", "1m", "1h"], help_text="Raw samples or the per-device rollup the points were computed from."
    )
    points = GpuPointSerializer(many=True)


class GpuPodSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    container = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_null=True)


class GpuSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    node = serializers.CharField(source="node.name")
    model = serializers.CharField(source="name")
    mig_instance = serializers.SerializerMethodField()
    pod = serializers.SerializerMethodField()
    shared = serializers.SerializerMethodField()
    pods = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    series = serializers.SerializerMethodField()

    class Meta:
        model = GpuDevice
        fields = [
            "url", "uuid", "node", "index", "model", "memory_total_bytes", "mig_mode", "mig_instance",
            "parent_uuid", "driver_version", "first_seen", "last_seen", "pod", "shared", "pods",
            "usage", "series",
        ]

    def _latest(self, obj: GpuDevice) -> dict[str, Any] | None:
        return self.context.get("usage", {}).get(obj.pk)

    def get_url(self, obj: GpuDevice) -> str:
        path = reverse("gpu-detail", kwargs={"uuid": obj.uuid})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_mig_instance(self, obj: GpuDevice) -> bool:
        return bool(obj.parent_uuid)

    @extend_schema_field(GpuPodSerializer(allow_null=True))
    def get_pod(self, obj: GpuDevice) -> dict[str, Any] | None:
        latest = self._latest(obj)
        if not latest or not latest["pod_name"]:
            return None
        path = reverse("namespace-pod-detail", kwargs={"namespace": latest["namespace"], "pod": latest["pod_name"]})
        request = self.context.get("request")
        return {
            "namespace": latest["namespace"],
            "name": latest["pod_name"],
            "container": latest["container"],
            "url": request.build_absolute_uri(path) if request else path,
        }

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_shared(self, obj: GpuDevice) -> bool:
        latest = self._latest(obj)
        return bool(latest and latest["shared"])

    @extend_schema_field(GpuHolderSerializer(many=True))
    def get_pods(self, obj: GpuDevice) -> list[dict[str, Any]]:
        latest = self._latest(obj)
        return list(latest["pods"]) if latest else []

    @extend_schema_field(GpuUsageSerializer(allow_null=True))
    def get_usage(self, obj: GpuDevice) -> dict[str, Any] | None:
        latest = self._latest(obj)
        if not latest:
            return None
        usage = dict(latest["usage"])
        usage["time"] = _format_time(usage["time"])
        return usage

    @extend_schema_field(GpuSeriesSerializer(required=False, allow_null=True))
    def get_series(self, obj: GpuDevice) -> dict[str, Any] | None:
        return self.context.get("series", {}).get(obj.pk)


def _format_time(t: datetime) -> str:
    return t.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")


# --- views --------------------------------------------------------------------------------------


class GpuListViewSet(ListMixin, ReadViewSet):
    queryset = GpuDevice.objects.select_related("node")
    serializer_class = GpuSerializer
    filterset_class = GpuFilterSet
    # UUIDs are unique: a stable cursor.
    cursor_ordering = ("uuid",)
    lookup_field = "uuid"
    lookup_url_kwarg = "uuid"

    def get_queryset(self) -> QuerySet[GpuDevice]:
        qs = super().get_queryset()
        if "node" in self.kwargs:
            node = Node.objects.filter(name=self.kwargs["node"]).first()
            if node is None:
                raise Http404("No such node.")
            qs = qs.filter(node=node)
        return qs

    def _context(self, devices: list[GpuDevice], request: Request) -> dict[str, Any]:
        context = self.get_serializer_context() | {"usage": gpus.latest([d.pk for d in devices])}
        window = self.series_window(request)
        if window is not None:
            found = gpus.device_series([d.pk for d in devices], window)
            context["series"] = {
                device_id: {
                    "start": _format_time(window.start),
                    "end": _format_time(window.end),
                    "step": window.step,
                    "source": window.source,
                    "points": [p | {"time": _format_time(p["time"])} for p in points],
                }
                for device_id, points in found.items()
            }
        return context

    def list_items(self, request: Request) -> Response:
        # Parameters first: a bad window is a 400 before any query.
        self.series_window(request)
        page = list(self.paginate_queryset(self.filter_queryset(self.get_queryset())) or [])
        data = GpuSerializer(page, many=True, context=self._context(page, request)).data
        return self.get_paginated_response(data)

    def retrieve_item(self, request: Request) -> Response:
        self.series_window(request)
        device = self.get_object()
        return Response(GpuSerializer(device, context=self._context([device], request)).data)


@extend_schema_view(
    list=extend_schema(
        summary="Every GPU and MIG instance: node, model, memory, the pod on it, newest usage",
        parameters=[OpenApiParameter("window", OpenApiTypes.INT, description="Add a series per device.")],
    ),
    retrieve=extend_schema(
        summary="A GPU by UUID, with a series when window or start is given",
        parameters=[OpenApiParameter("uuid", OpenApiTypes.STR, OpenApiParameter.PATH, description="NVML UUID"),
                    *SERIES_PARAMETERS],
    ),
)
class GpuViewSet(RetrieveMixin, GpuListViewSet):
    lookup_value_regex = NAME_REGEX


@extend_schema_view(
    list=extend_schema(
        summary="The GPUs of a node with their newest usage; window or start adds a series to each",
        parameters=[OpenApiParameter("node", OpenApiTypes.STR, OpenApiParameter.PATH, description="Node name"),
                    *SERIES_PARAMETERS],
    ),
)
class NodeGpuViewSet(GpuListViewSet):
    pass

