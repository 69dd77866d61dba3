"""`/api/summary/` and `/api/statistics/`: the cluster at a glance and its hours (docs/api.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_serializer, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from metrics import statistics, summary
from metrics.api.views import ReadViewSet
from metrics.models import Cluster, Node

_F: dict[str, Any] = {"allow_null": True}


class NodesSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Nodes ever seen in the cluster.")
    reporting = serializers.IntegerField(help_text="Nodes whose collector missed fewer than 3 intervals.")
    not_reporting = serializers.IntegerField(help_text="Nodes whose collector missed 3 intervals or more.")
    not_reporting_names = serializers.ListField(child=serializers.CharField(), help_text="At most 20, by name.")


class PodCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Pods seen in the last 5 minutes.")
    phases = serializers.DictField(
        child=serializers.IntegerField(), required=False,
        help_text="Pods by phase; only when the inventory records the phase.",
    )
    ready = serializers.IntegerField(required=False, help_text="Only when the inventory records readiness.")
    not_ready = serializers.IntegerField(required=False)


class CpuUsageSerializer(serializers.Serializer):
    used_millicores = serializers.FloatField(help_text="The nodes' use (system daemons included).", **_F)
    capacity_millicores = serializers.FloatField(**_F)
    percent_of_capacity = serializers.FloatField(**_F)
    pods_used_millicores = serializers.FloatField(help_text="Sum over the pods in the same minute.", **_F)
    limits_millicores = serializers.FloatField(help_text="Sum of the current pods' limits.", **_F)
    limits_percent_of_capacity = serializers.FloatField(required=False, **_F)
    pods_percent_of_limits = serializers.FloatField(help_text="Use of limited pods against their limits.", **_F)
    requests_millicores = serializers.FloatField(required=False, help_text="When the inventory has requests.", **_F)
    requests_percent_of_capacity = serializers.FloatField(required=False, **_F)
    pods_percent_of_requests = serializers.FloatField(required=False, **_F)


class MemoryUsageSerializer(serializers.Serializer):
    used_bytes = serializers.FloatField(help_text="The nodes' working set.", **_F)
    capacity_bytes = serializers.FloatField(**_F)
    percent_of_capacity = serializers.FloatField(**_F)
    pods_used_bytes = serializers.FloatField(**_F)
    limits_bytes = serializers.IntegerField(**_F)
    pods_percent_of_limits = serializers.FloatField(**_F)
    requests_bytes = serializers.IntegerField(required=False, **_F)
    requests_percent_of_capacity = serializers.FloatField(required=False, **_F)
    pods_percent_of_requests = serializers.FloatField(required=False, **_F)


class SummaryGpuUsageSerializer(serializers.Serializer):
    nodes_with_gpu = serializers.IntegerField()
    utilization_percent_sum = serializers.FloatField(help_text="Summed over GPUs: 250 = 2.5 GPUs busy.")
    memory_used_bytes = serializers.IntegerField()
    gpus = serializers.IntegerField(required=False, **_F)
    utilization_percent_of_capacity = serializers.FloatField(required=False, **_F)


class SummaryUsageSerializer(serializers.Serializer):
    time = serializers.DateTimeField(help_text="Start of the newest complete minute.", **_F)
    coverage = serializers.FloatField(**_F)
    cpu = CpuUsageSerializer()
    memory = MemoryUsageSerializer()
    gpu = SummaryGpuUsageSerializer(required=False, help_text="The reporting nodes' newest samples; only when a node has a GPU.")


class ClusterSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    newest_sample = serializers.DateTimeField(help_text="End of the newest interval any node sent.", **_F)
    nodes = NodesSerializer()
    pods = PodCountsSerializer()
    model_servers = serializers.DictField(
        child=serializers.IntegerField(), required=False,
        help_text="Current pods serving models, by kind (vllm, sglang); only when the inventory records it.",
    )
    usage = SummaryUsageSerializer()


# A `list` action answering one object, not an array (found by schemathesis).
@extend_schema_serializer(many=False)
class SummarySerializer(serializers.Serializer):
    time = serializers.DateTimeField(help_text="When the summary was made.")
    newest_sample = serializers.DateTimeField(**_F)
    clusters = ClusterSummarySerializer(many=True)
    alerts = serializers.DictField(
        child=serializers.IntegerField(), required=False,
        help_text="Firing alerts by severity and in total; only when alerting is installed.",
    )


@extend_schema_view(
    list=extend_schema(summary="Each cluster at a glance: nodes, pods, use against capacity, limits and requests", responses=SummarySerializer),
)
class SummaryViewSet(ReadViewSet):
    """Per cluster: nodes reporting (3 missed intervals of its own collector make a node not
    reporting), pods, the newest complete minute against capacity, limits and requests, GPUs and
    firing alerts where present. From the inventory and the rollups only."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = SummarySerializer
    queryset = Node.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(SummarySerializer(summary.summary()).data)


# --- statistics -----------------------------------------------------------------------------------


def _hourly_point_serializer(name: str, with_peaks: bool) -> type[serializers.Serializer]:
    """The hourly point: time, coverage and each statistics.hourly_fields() entry (CPU, memory,
    and the catalogue's GPU fields), with `<field>_peak` for the cluster."""
    fields: dict[str, serializers.Field] = {
        "time": serializers.DateTimeField(help_text="Start of the hour."),
        "coverage": serializers.FloatField(allow_null=True, help_text="Share of the hour the nodes reported (metrics.series)."),
    }
    for f in statistics.hourly_fields():
        fields[f] = serializers.FloatField(allow_null=True, help_text="Average over the hour.")
        if with_peaks:
            fields[f"{f}_peak"] = serializers.FloatField(
                allow_null=True, help_text="Highest 1-minute average in the hour (null beyond the 1-minute rollups' retention)."
            )
    return type(name, (serializers.Serializer,), fields)


ClusterHourSerializer = _hourly_point_serializer("StatisticsClusterHour", True)
GroupHourSerializer = _hourly_point_serializer("StatisticsGroupHour", False)


class NamespaceStatisticsSerializer(serializers.Serializer):
    name = serializers.CharField()
    cpu_millicores = serializers.FloatField(allow_null=True, help_text="Average over the window (coverage-weighted).")
    cpu_millicores_peak_hour = serializers.FloatField(allow_null=True)
    memory_working_set_bytes = serializers.FloatField(allow_null=True)
    memory_working_set_bytes_peak_hour = serializers.FloatField(allow_null=True)
    hourly = GroupHourSerializer(many=True)


class ModelServerHourSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    cpu_millicores = serializers.FloatField(allow_null=True)
    memory_working_set_bytes = serializers.FloatField(allow_null=True)


class ModelServerStatisticsSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="vllm, sglang, ...")
    pods = serializers.IntegerField()
    hourly = ModelServerHourSerializer(many=True)


class TopItemSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    cpu_millicores = serializers.FloatField(allow_null=True, help_text="Average over the window's elapsed time.")
    cpu_core_hours = serializers.FloatField(allow_null=True)
    memory_working_set_bytes = serializers.FloatField(allow_null=True, help_text="Average over the window's elapsed time.")
    memory_working_set_max_bytes = serializers.FloatField(allow_null=True)
    deployment = serializers.CharField(required=False, allow_null=True, help_text="Pods only.")
    node = serializers.CharField(required=False, allow_null=True, help_text="Pods only.")
    hours_reported = serializers.FloatField(required=False, help_text="Pods only.")
    pods = serializers.IntegerField(required=False, help_text="Deployments only: pods seen in the window.")


class TopSerializer(serializers.Serializer):
    pods_by_cpu = TopItemSerializer(many=True)
    pods_by_memory = TopItemSerializer(many=True)
    deployments_by_cpu = TopItemSerializer(many=True)
    deployments_by_memory = TopItemSerializer(many=True)


class TotalsSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        fields: dict[str, serializers.Field] = {}
        for f in statistics.hourly_fields():
            fields[f] = serializers.FloatField(allow_null=True, help_text="Average over the window (coverage-weighted).")
            fields[f"{f}_peak"] = serializers.FloatField(allow_null=True, help_text="Peak minute of the window.")
        return fields


# A `list` action answering one object, not an array (found by schemathesis).
@extend_schema_serializer(many=False)
class StatisticsSerializer(serializers.Serializer):
    cluster = serializers.CharField(allow_null=True, help_text="The cluster asked for; null: every node.")
    hours = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(help_text="End of the current hour: the last point is still filling.")
    step = serializers.IntegerField()
    peak_source = serializers.CharField(help_text="Where the peaks come from: the 1-minute rollups.")
    cluster_hourly = ClusterHourSerializer(many=True)
    totals = TotalsSerializer()
    namespaces = NamespaceStatisticsSerializer(many=True)
    model_servers = ModelServerStatisticsSerializer(
        many=True, required=False, help_text="Only when the inventory records each pod's model server."
    )
    top = TopSerializer()


@extend_schema_view(
    list=extend_schema(
        summary="Hour by hour: the cluster's average and peak use, per namespace and model-server kind, and the top consumers",
        parameters=[
            OpenApiParameter("hours", OpenApiTypes.INT, description="How many hours, 1 to 8760 (default 24), ending with the current one."),
            OpenApiParameter("cluster", OpenApiTypes.STR, description="Only this cluster's nodes and pods (default: every node)."),
        ],
        responses=StatisticsSerializer,
    ),
)
class StatisticsViewSet(ReadViewSet):
    """The last `hours` hours from the 1-hour rollups (peaks from the 1-minute rollups); a bad
    `hours` or unknown `cluster` is a 400 naming it."""

    pagination_class = None  # type: ignore[assignment]
    serializer_class = StatisticsSerializer
    queryset = Node.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw = request.query_params.get("hours", "24")
        try:
            hours = int(raw)
        except ValueError:
            raise ValidationError({"hours": ["Must be a whole number of hours."]}) from None
        if not 1 <= hours <= statistics.MAX_HOURS:
            raise ValidationError({"hours": [f"Must be between 1 and {statistics.MAX_HOURS}."]})
        if hours > settings.RETENTION_1H_DAYS * 24:
            raise ValidationError({"hours": [
                f"The 1-hour rollups are kept {settings.RETENTION_1H_DAYS} days (RETENTION_1H_DAYS)."
            ]})
        cluster = None
        if "cluster" in request.query_params:
            cluster = Cluster.objects.filter(name=request.query_params["cluster"]).first()
            if cluster is None:
                raise ValidationError({"cluster": ["No such cluster."]})
        # Plain JSON values, not StatisticsSerializer (which documents the shape): its hourly
        # points through nested serializers cost 25 ms of a 24-hour answer on the bench data.
        return Response(statistics.statistics(hours, cluster=cluster))
