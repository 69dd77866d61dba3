"""Read API of alerting: /api/alerts/ (active by default, history with ?state=resolved and a time
window) and /api/alert-rules/. Registered on the read API's router (metrics/api/urls.py)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.authentication import SessionAuthentication

from metrics.alerts.catalogue import METRICS
from metrics.alerts.models import AlertInstance, AlertRule, AlertState, Severity
from metrics.api.pagination import NameCursorPagination
from metrics.auth import ApiTokenAuthentication, CanRead


def _seconds(value: Any) -> float:
    return value.total_seconds()


class AlertRuleSerializer(serializers.ModelSerializer):
    for_seconds = serializers.SerializerMethodField(help_text="`for`: how long it must hold before firing.")
    keep_firing_for_seconds = serializers.SerializerMethodField()
    window_seconds = serializers.SerializerMethodField()
    needs = serializers.SerializerMethodField(help_text="Data the metric needs that is not stored yet, or null.")

    class Meta:
        model = AlertRule
        fields = [
            "name", "metric", "level", "namespace", "deployment", "node", "pod_labels", "model_server_kind",
            "comparison", "threshold", "window_seconds", "for_seconds", "keep_firing_for_seconds", "severity",
            "labels", "summary", "description", "runbook_url", "enabled", "last_evaluated", "last_error", "needs",
        ]

    def get_for_seconds(self, obj: AlertRule) -> float:
        return _seconds(obj.for_duration)

    def get_keep_firing_for_seconds(self, obj: AlertRule) -> float:
        return _seconds(obj.keep_firing_for)

    def get_window_seconds(self, obj: AlertRule) -> float:
        return _seconds(obj.window)

    def get_needs(self, obj: AlertRule) -> str | None:
        metric = METRICS.get(obj.metric)
        return metric.needs or None if metric else None


class AlertSerializer(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule.name")

    class Meta:
        model = AlertInstance
        fields = [
            "id", "rule", "fingerprint", "state", "severity", "namespace", "node", "labels", "annotations",
            "started_at", "fired_at", "last_true_at", "ended_at", "value", "peak_value", "silenced",
        ]


class AlertFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(
        choices=AlertState.choices, label="pending, firing or resolved (repeat for several); default: "
        "pending and firing")
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    namespace = django_filters.CharFilter()
    node = django_filters.CharFilter()
    rule = django_filters.CharFilter(field_name="rule__name", label="Rule name")
    since = django_filters.IsoDateTimeFilter(method="filter_since", label="Alerts active at or after this time")
    until = django_filters.IsoDateTimeFilter(method="filter_until", label="Alerts that started before this time")

    class Meta:
        model = AlertInstance
        fields = ["state", "severity", "namespace", "node", "rule", "since", "until"]

    def filter_since(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return qs.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=value))

    def filter_until(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return qs.filter(started_at__lt=value)

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        if not self.form.cleaned_data.get("state"):
            queryset = queryset.exclude(state=AlertState.RESOLVED)  # active alerts unless asked
        return super().filter_queryset(queryset)


class AlertRuleFilterSet(django_filters.FilterSet):
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    enabled = django_filters.TypedChoiceFilter(choices=[("true", "true"), ("false", "false")],
                                               coerce=lambda v: v == "true")

    class Meta:
        model = AlertRule
        fields = ["severity", "metric", "level", "enabled"]


class _AlertingReadViewSet(viewsets.ReadOnlyModelViewSet):
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [CanRead]
    pagination_class = NameCursorPagination


@extend_schema_view(
    list=extend_schema(summary="Alerts: active ones by default; ?state=resolved&since=... for history"),
    retrieve=extend_schema(summary="One alert by id"),
)
class AlertViewSet(_AlertingReadViewSet):
    queryset = AlertInstance.objects.select_related("rule")
    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet
    cursor_ordering = ("-started_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="Alert rules"),
    retrieve=extend_schema(summary="One alert rule by name"),
)
class AlertRuleViewSet(_AlertingReadViewSet):
    queryset = AlertRule.objects.all()
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilterSet
    lookup_field = "name"
    lookup_value_regex = r"[^/\x00]+"
    cursor_ordering = ("name",)
