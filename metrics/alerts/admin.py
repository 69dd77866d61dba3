"""Alerting in the admin: rules, silences and receivers to edit; alerts and the delivery log to
read. Imported by metrics.admin (the module Django's admin discovers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from metrics.alerts.catalogue import METRICS
from metrics.alerts.models import (
    AlertInstance, AlertRule, DeliveryAttempt, Notification, NotificationGroup, Receiver, Silence,
)


class AlertRuleForm(forms.ModelForm):
    runbook_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = AlertRule
        fields = "__all__"
        help_texts = {
            "metric": "Levels each metric supports: " + "; ".join(
                f"{m.label}: {', '.join(m.levels)}" + (f" (needs {m.needs})" if m.needs else "")
                for m in METRICS.values()
            ),
        }


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ("name", "metric", "level", "comparison", "threshold", "for_duration", "severity", "enabled",
                    "last_evaluated", "last_error")
    list_filter = ("enabled", "severity", "level", "metric")
    search_fields = ("name", "namespace", "deployment", "node")
    readonly_fields = ("last_evaluated", "last_error")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "severity")}),
        ("Condition", {"fields": ("metric", "level", "comparison", "threshold", "window", "for_duration",
                                  "keep_firing_for")}),
        ("Selectors (empty = all)", {"fields": ("namespace", "deployment", "node", "pod_labels",
                                                "model_server_kind")}),
        ("Notification", {"fields": ("labels", "summary", "description", "runbook_url")}),
        ("Status", {"fields": ("last_evaluated", "last_error")}),
    )


@admin.register(AlertInstance)
class AlertInstanceAdmin(admin.ModelAdmin):
    list_display = ("rule", "state", "severity", "namespace", "node", "entity", "value", "peak_value",
                    "started_at", "fired_at", "ended_at", "silenced")
    list_filter = ("state", "severity", "silenced")
    search_fields = ("fingerprint", "namespace", "node")
    list_select_related = ("rule",)

    @admin.display(description="entity")
    def entity(self, obj: AlertInstance) -> str:
        return obj.labels.get("pod") or obj.labels.get("deployment") or obj.labels.get("node") or ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("matchers", "starts_at", "ends_at", "author", "comment", "active")
    search_fields = ("matchers", "author", "comment")

    @admin.display(boolean=True)
    def active(self, obj: Silence) -> bool:
        return obj.starts_at <= timezone.now() < obj.ends_at

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        now = timezone.now()
        return {"starts_at": now, "ends_at": now + timedelta(hours=2),
                "author": request.user.get_username()}


@admin.register(Receiver)
class ReceiverAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}  # receivers are often in-cluster http
    list_display = ("name", "kind", "url", "enabled", "send_resolved", "group_wait", "group_interval",
                    "repeat_interval")
    list_filter = ("kind", "enabled")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ("time", "status_code", "error", "seconds")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """The delivery log: every message, its status and each attempt."""

    list_display = ("created", "receiver", "alert_status", "status", "attempts", "next_attempt_at", "sent_at",
                    "last_error")
    list_filter = ("status", "alert_status", "receiver")
    inlines = [DeliveryAttemptInline]
    readonly_fields = ("receiver", "group_key", "status", "alert_status", "payload", "created", "next_attempt_at",
                       "attempts", "sent_at", "last_error")
    list_select_related = ("receiver",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(_ReadOnly):
    list_display = ("time", "notification", "status_code", "error", "seconds")
    list_select_related = ("notification__receiver",)


@admin.register(NotificationGroup)
class NotificationGroupAdmin(_ReadOnly):
    """Where each receiver's group stands: when it was last notified and of which alerts."""

    list_display = ("receiver", "group_key", "created", "last_flush_at")
    list_select_related = ("receiver",)
