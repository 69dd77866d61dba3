"""Serializers of the read API: inventory fields, latest usage and an optional series."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from metrics import series
from metrics.models import Container, Node, Pod


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


class UsageMixin(serializers.Serializer):
    """Adds `usage` from the view's context (one query per page, never per row)."""

    usage = serializers.SerializerMethodField()

    def usage_key(self, obj: Any) -> Any:
        return obj.pk

    @extend_schema_field(UsageSerializer(allow_null=True))
    def get_usage(self, obj: Any) -> dict[str, Any] | None:
        usage = self.context.get("usage", {}).get(self.usage_key(obj))
        return UsageSerializer(usage).data if usage else None


class SeriesMixin(serializers.Serializer):
    series = serializers.SerializerMethodField()

    @extend_schema_field(SeriesSerializer(allow_null=True))
    def get_series(self, obj: Any) -> dict[str, Any] | None:
        # Built by the view as plain JSON values: 10,000 points through a serializer cost ~100 ms.
        return self.context.get("series")


class NodeSerializer(UsageMixin, serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(
        view_name="node-detail", lookup_field="name", lookup_url_kwarg="node"
    )

    class Meta:
        model = Node
        fields = [
            "url", "name", "first_seen", "last_seen", "cpu_capacity_cores", "memory_total_bytes",
            "fs_capacity_bytes", "usage",
        ]


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
            "labels", "cpu_limit_cores", "memory_limit_bytes", "first_seen", "last_seen", "usage",
        ]

    def get_url(self, obj: Pod) -> str:
        path = reverse("namespace-pod-detail", kwargs={"namespace": obj.namespace, "pod": obj.name})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ContainerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Container
        fields = ["name", "container_id", "image", "first_seen", "last_seen"]


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

    def get_url(self, obj: dict[str, Any]) -> str:
        path = reverse("namespace-detail", kwargs={"namespace": obj["namespace"]})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


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

    def get_url(self, obj: dict[str, Any]) -> str:
        path = reverse(
            "namespace-deployment-detail",
            kwargs={"namespace": obj["namespace"], "deployment": obj["deployment"]},
        )
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class DeploymentDetailSerializer(SeriesMixin, DeploymentSerializer):
    pass


class ClusterSerializer(serializers.Serializer):
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
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    usage = UsageSerializer(allow_null=True)
    series = SeriesSerializer(required=False)
