"""Serializers of the read API: inventory fields, latest usage and an optional series."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from metrics import series
from metrics.models import Container, Node, Pod


def absolute_url(context: dict[str, Any], view: str, **kwargs: str) -> str | None:
    """The item's URL, or None for a name no URL can carry.

    Ingest refuses such names (metrics/ingest/rules.py), but rows stored before it did, or
    written around it, must not turn every list that shows them into a 500.
    """
    try:
        path = reverse(view, kwargs=kwargs)
    except NoReverseMatch:
        return None
    request = context.get("request")
    return request.build_absolute_uri(path) if request else path


# Null only for a name no URL can carry (see absolute_url).
_Url = extend_schema_field({"type": ["string", "null"], "format": "uri"})


def _point_field(field: series.PointField) -> serializers.Field:
    kind = serializers.IntegerField if field.integer else serializers.FloatField
    return kind(allow_null=True, help_text=f"{field.help} Unit: {field.unit}.")


class PointSerializer(serializers.Serializer):
    """One bucket of a series, or the newest sample in `usage`; null where unknown."""

    time = serializers.DateTimeField(help_text="Start of the bucket (or of the sample's interval).")

    def get_fields(self) -> dict[str, serializers.Field]:
        # The point's fields are metrics.series.POINTS, defined once there.
        fields = super().get_fields()
        fields.update({f.name: _point_field(f) for f in series.POINTS})
        return fields


class UsageSerializer(PointSerializer):
    interval_seconds = serializers.FloatField(
        help_text="Length of the sample (60 for a namespace's or Deployment's newest complete minute)."
    )


class SeriesSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Start of the first bucket (the window floored to the step).")
    end = serializers.DateTimeField(help_text="End of the last bucket (the window ceiled to the step).")
    step = serializers.IntegerField(help_text="Bucket length in seconds.")
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named like Field.source
        choices=["raw", "1m", "1h"], help_text="Raw samples or the rollup the points were computed from."
    )
    points = PointSerializer(many=True)


class SeriesParamsSerializer(serializers.Serializer):
    window = serializers.IntegerField(required=False, min_value=1)
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    step = serializers.IntegerField(required=False, min_value=1)


IDENTITY = ("name", "namespace", "url")
# After the inventory fields, in this order: the newest usage, what only a detail has, the series.
TAIL = ("usage", "collector_info", "containers", "series")


class IdentityFirst(serializers.Serializer):
    """Every read answer in one order: who it is (name, namespace, url), its inventory fields,
    then `usage`, the detail's extras, and `series` last.

    DRF orders declared fields by class, so mixins would otherwise put `usage` or `series` first
    in some answers and last in others.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        first = [k for k in IDENTITY if k in fields]
        last = [k for k in TAIL if k in fields]
        middle = [k for k in fields if k not in first and k not in last]
        return {k: fields[k] for k in first + middle + last}


class UsageMixin(IdentityFirst):
    """Adds `usage` from the view's context (one query per page, never per row)."""

    usage = serializers.SerializerMethodField()

    def usage_key(self, obj: Any) -> Any:
        return obj.pk

    @extend_schema_field(UsageSerializer(allow_null=True))
    def get_usage(self, obj: Any) -> dict[str, Any] | None:
        usage = self.context.get("usage", {}).get(self.usage_key(obj))
        return UsageSerializer(usage).data if usage else None


class SeriesMixin(IdentityFirst):
    series = serializers.SerializerMethodField()

    @extend_schema_field(SeriesSerializer(allow_null=True))
    def get_series(self, obj: Any) -> dict[str, Any] | None:
        # Built by the view as plain JSON values: 10,000 points through a serializer cost ~100 ms.
        return self.context.get("series")


class NodeSerializer(UsageMixin, serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = [
            "url", "name", "first_seen", "last_seen", "cpu_capacity_cores", "memory_total_bytes",
            "fs_capacity_bytes", "interval_seconds", "reporting", "usage",
        ]

    reporting = serializers.SerializerMethodField(
        help_text="False once 3 of the node's intervals have passed since last_seen without a batch "
        "(its collector stopped sending)."
    )

    def get_reporting(self, obj: Node) -> bool:
        return obj.reporting(self.context.get("now") or timezone.now())

    @_Url
    def get_url(self, obj: Node) -> str | None:
        return absolute_url(self.context, "node-detail", node=obj.name)


class NodeDetailSerializer(SeriesMixin, NodeSerializer):
    class Meta(NodeSerializer.Meta):
        fields = NodeSerializer.Meta.fields + ["collector_info", "series"]


class PodSerializer(UsageMixin, serializers.ModelSerializer):
    node = serializers.CharField(source="node.name")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Pod
        fields = [
            "url", "name", "namespace", "uid", "node", "owner_kind", "owner_name", "deployment", "qos",
            "labels", "cpu_limit_cores", "memory_limit_bytes", "phase", "ready", "cpu_request_cores",
            "memory_request_bytes", "model_server", "model_name", "first_seen", "last_seen", "usage",
        ]

    @_Url
    def get_url(self, obj: Pod) -> str | None:
        return absolute_url(self.context, "namespace-pod-detail", namespace=obj.namespace, pod=obj.name)


class ContainerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Container
        fields = [
            "name", "container_id", "image", "ready", "state", "state_reason", "last_termination_reason",
            "last_termination_time", "first_seen", "last_seen",
        ]


class PodDetailSerializer(SeriesMixin, PodSerializer):
    containers = ContainerSerializer(many=True, read_only=True)

    class Meta(PodSerializer.Meta):
        fields = PodSerializer.Meta.fields + ["containers", "series"]


class NamespaceSerializer(UsageMixin, serializers.Serializer):
    url = serializers.SerializerMethodField()
    name = serializers.CharField(source="namespace")
    pods = serializers.IntegerField(help_text="Pods ever seen in the namespace (the inventory).")
    deployments = serializers.IntegerField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()

    def usage_key(self, obj: Any) -> Any:
        return (obj["namespace"],)

    @_Url
    def get_url(self, obj: dict[str, Any]) -> str | None:
        return absolute_url(self.context, "namespace-detail", namespace=obj["namespace"])


class NamespaceDetailSerializer(SeriesMixin, NamespaceSerializer):
    pass


class DeploymentSerializer(UsageMixin, serializers.Serializer):
    url = serializers.SerializerMethodField()
    name = serializers.CharField(source="deployment")
    namespace = serializers.CharField()
    pods = serializers.IntegerField(help_text="Pods ever seen for the Deployment (the inventory).")
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()

    def usage_key(self, obj: Any) -> Any:
        return (obj["namespace"], obj["deployment"])

    @_Url
    def get_url(self, obj: dict[str, Any]) -> str | None:
        return absolute_url(
            self.context, "namespace-deployment-detail", namespace=obj["namespace"], deployment=obj["deployment"]
        )


class DeploymentDetailSerializer(SeriesMixin, DeploymentSerializer):
    pass


class ClusterItemSerializer(serializers.Serializer):
    """A cluster as an item of /api/clusters/ (a paged list)."""

    url = serializers.SerializerMethodField()
    name = serializers.CharField(
        help_text="The cluster's name: the collectors' CLUSTER_NAME, or the server's for batches naming none."
    )
    nodes = serializers.IntegerField(help_text="Nodes ever seen.")
    nodes_reporting = serializers.IntegerField(help_text="Nodes with a batch in the last 5 minutes.")
    pods = serializers.IntegerField(help_text="Pods seen in the last 5 minutes.")
    cpu_capacity_millicores = serializers.FloatField(allow_null=True, help_text="Of the reporting nodes.")
    memory_capacity_bytes = serializers.IntegerField(allow_null=True, help_text="Of the reporting nodes.")
    usage = UsageSerializer(
        allow_null=True,
        help_text="The newest minute every reporting node covered whole, summed over the nodes.",
    )
    series = SeriesSerializer(required=False)

    def get_url(self, obj: dict[str, Any]) -> str:
        path = reverse("clusters-detail", kwargs={"cluster": obj["name"]})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


# /api/cluster/'s `list` answers one object, not an array of them (found by schemathesis).
@extend_schema_serializer(many=False)
class ClusterSerializer(ClusterItemSerializer):
    pass


class EntitySeriesSerializer(serializers.Serializer):
    name = serializers.CharField()
    namespace = serializers.CharField(required=False)
    uid = serializers.CharField(required=False)
    points = PointSerializer(many=True)


class ManySeriesSerializer(serializers.Serializer):
    kind = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    step = serializers.IntegerField()
    source = serializers.ChoiceField(choices=["raw", "1m", "1h"])  # type: ignore[assignment]
    series = EntitySeriesSerializer(many=True)


class ContainerUsageSerializer(serializers.Serializer):
    name = serializers.CharField()
    container_id = serializers.CharField(help_text="The runtime's id of the current instance.")
    image = serializers.CharField()
    ready = serializers.BooleanField(allow_null=True)
    state = serializers.CharField(allow_null=True, help_text="running, waiting or terminated.")
    state_reason = serializers.CharField(allow_null=True, help_text="E.g. CrashLoopBackOff.")
    last_termination_reason = serializers.CharField(allow_null=True, help_text="E.g. OOMKilled.")
    last_termination_time = serializers.DateTimeField(allow_null=True)
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    usage = UsageSerializer(allow_null=True)
    series = SeriesSerializer(required=False)


# --- model servers ---------------------------------------------------------------------------------


class ModelServerLatestSerializer(serializers.Serializer):
    time = serializers.DateTimeField(allow_null=True, help_text="Start of the newest replica interval.")
    replicas_reporting = serializers.IntegerField(help_text="Replicas with a serving sample in the last 5 minutes.")
    prompt_tokens_per_second = serializers.FloatField(allow_null=True, help_text="Summed over replicas, each over its newest interval.")
    generation_tokens_per_second = serializers.FloatField(allow_null=True, help_text="Output tokens per second, summed over replicas.")
    requests_per_second = serializers.FloatField(allow_null=True, help_text="Successful requests per second, summed over replicas.")
    requests_running = serializers.FloatField(allow_null=True)
    requests_waiting = serializers.FloatField(allow_null=True)
    kv_cache_usage_percent = serializers.FloatField(allow_null=True, help_text="Mean over replicas.")
    ttft_mean_seconds = serializers.FloatField(allow_null=True)
    ttft_p95_seconds = serializers.FloatField(allow_null=True, help_text="The highest replica p95 (interpolated in its interval's buckets).")
    itl_mean_seconds = serializers.FloatField(allow_null=True, help_text="Inter-token latency.")
    e2e_mean_seconds = serializers.FloatField(allow_null=True, help_text="End-to-end request latency.")
    gpu_utilization_percent = serializers.FloatField(allow_null=True, help_text="The replicas' pods' GPU utilisation, summed (one value per GPU).")
    gpu_memory_bytes = serializers.IntegerField(allow_null=True, help_text="GPU memory the replicas' pods hold.")


class ModelServerPointSerializer(serializers.Serializer):
    """One bucket of a model server's series: the catalogue's serving metrics, then coverage."""

    time = serializers.DateTimeField(help_text="Start of the bucket.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields.update({f.name: _point_field(f) for f in series.SERVING_POINTS})
        return fields


class ModelServerSeriesSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    step = serializers.IntegerField()
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["raw", "1m", "1h"], help_text="Raw samples or the rollup the points were computed from."
    )
    points = ModelServerPointSerializer(many=True)


class ModelServerSerializer(serializers.Serializer):
    url = serializers.SerializerMethodField()
    namespace = serializers.CharField()
    name = serializers.CharField(source="server", help_text="The Deployment, or the pod no Deployment owns.")
    kind = serializers.ChoiceField(choices=["deployment", "pod"])
    model_server = serializers.CharField(source="server_kind", help_text="vllm or sglang.")
    model_name = serializers.CharField(source="model", allow_null=True)
    replicas = serializers.IntegerField(help_text="Pods seen in the last 5 minutes.")
    pods = serializers.IntegerField(help_text="Pods ever seen (the inventory).")
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    latest = serializers.SerializerMethodField()

    def get_url(self, obj: dict[str, Any]) -> str:
        path = reverse(
            "model-server-namespace-detail", kwargs={"namespace": obj["namespace"], "server": obj["server"]}
        )
        if obj["kind"] == "pod":
            path += "?kind=pod"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(ModelServerLatestSerializer())
    def get_latest(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return self.context.get("usage", {}).get((obj["namespace"], obj["kind"], obj["server"]))


class ModelServerDetailSerializer(ModelServerSerializer):
    series = serializers.SerializerMethodField()

    @extend_schema_field(ModelServerSeriesSerializer(allow_null=True))
    def get_series(self, obj: Any) -> dict[str, Any] | None:
        return self.context.get("series")
