"""Alert rules, their instances (one per rule and entity), silences, receivers and the
notification queue. Imported by metrics.models so Django finds them in the `metrics` app."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models

from metrics.alerts.catalogue import COMPARISONS, LEVELS, METRICS


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def labels_error(value: object) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return 'An object of string keys to string values, e.g. {"team": "shop"}.'
    return None


class AlertRule(models.Model):
    name = models.CharField(
        max_length=100, unique=True, help_text="The alert's `alertname` label, e.g. PodCPUHigh."
    )
    metric = models.CharField(max_length=48, choices=[(m.key, m.label) for m in METRICS.values()])
    level = models.CharField(
        max_length=16, choices=LEVELS, default="pod",
        help_text="What one alert is about: one per pod, per Deployment, per node, ... "
        "(each metric supports some levels; the form says which).",
    )
    # Selectors: empty = every entity.
    namespace = models.CharField(max_length=253, blank=True, default="")
    deployment = models.CharField(max_length=253, blank=True, default="")
    node = models.CharField(max_length=253, blank=True, default="")
    pod_labels = models.JSONField(
        default=dict, blank=True,
        help_text="Pods must carry all these labels, e.g. {\"app\": \"web\"}.",
    )
    model_server_kind = models.CharField(
        max_length=32, blank=True, default="", help_text="vllm or sglang (model-server metrics only)."
    )
    comparison = models.CharField(max_length=2, choices=COMPARISONS, default=">")
    threshold = models.FloatField(default=0)
    window = models.DurationField(
        default=timedelta(minutes=1),
        help_text="The stored data each evaluation looks at: averages for gauges and percentages, "
        "sums for counts (OOM kills, restarts in the window).",
    )
    for_duration = models.DurationField(
        "for", default=timedelta(minutes=5),
        help_text="How long the condition must hold before the alert fires (pending until then).",
    )
    keep_firing_for = models.DurationField(
        default=timedelta(0), help_text="How long it must be clear before the alert resolves."
    )
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    labels = models.JSONField(default=dict, blank=True,
                              help_text="Extra labels, e.g. {\"team\": \"shop\"}.")
    summary = models.CharField(
        max_length=500, blank=True, default="",
        help_text="Template: {entity}, {value}, {threshold}, {namespace}, {pod}, {node}, "
        "{deployment} and any label, e.g. \"{entity} uses {value:.0f}% of its CPU limit\".",
    )
    description = models.TextField(blank=True, default="", help_text="Template, like the summary.")
    runbook_url = models.URLField(blank=True, default="")
    enabled = models.BooleanField(default=True)
    # What the newest evaluation said about the rule itself (an error, or data it still lacks).
    last_evaluated = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Checked here rather than by field validators, which migrations would have to import.
        for field in ("pod_labels", "labels"):
            error = labels_error(getattr(self, field))
            if error:
                raise ValidationError({field: error})
        metric = METRICS.get(self.metric)
        if metric is not None and self.level not in metric.levels:
            raise ValidationError({"level": f"{metric.label} is evaluated per {', '.join(metric.levels)}."})
        if self.window <= timedelta(0):
            raise ValidationError({"window": "Must be positive."})
        for field in ("for_duration", "keep_firing_for"):
            if getattr(self, field) < timedelta(0):
                raise ValidationError({field: "Must not be negative."})


class AlertState(models.TextChoices):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertInstance(models.Model):
    """One alert of one rule about one entity, from its first crossing to its resolution.

    A rule's pending or firing instance for a fingerprint is unique; resolved ones are history.
    """

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="instances")
    # sha256 of the sorted labels, first 16 hex digits (Alertmanager's fingerprints are 16 too).
    fingerprint = models.CharField(max_length=16)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=AlertState.choices)
    # Copied from the labels, to filter on without jsonb lookups.
    severity = models.CharField(max_length=16, choices=Severity.choices)
    namespace = models.CharField(max_length=253, blank=True, default="")
    node = models.CharField(max_length=253, blank=True, default="")
    # When the condition first held (start of pending), when it fired, when it last held, and
    # when it resolved.
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    last_true_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    peak_value = models.FloatField(null=True, blank=True)
    silenced = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "fingerprint"], condition=~models.Q(state="resolved"),
                name="alertinstance_one_active_per_fingerprint",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "-started_at"], name="alertinstance_state_started"),
            models.Index(fields=["-ended_at"], name="alertinstance_ended"),
        ]

    def __str__(self) -> str:
        return f"{self.labels.get('alertname', '')} {self.fingerprint} ({self.state})"


class Silence(models.Model):
    matchers = models.TextField(
        help_text='Label matchers, comma separated: alertname="PodCPUHigh", namespace=~"shop|pay", '
        'severity!="info", pod!~"debug-.*" (=, !=, =~, !~; regexes match the whole value).'
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    author = models.CharField(max_length=150)
    comment = models.TextField(blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        return self.matchers

    def clean(self) -> None:
        from metrics.alerts.silences import MatcherError, parse_matchers

        try:
            parse_matchers(self.matchers)
        except MatcherError as exc:
            raise ValidationError({"matchers": str(exc)}) from None
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "Must be after the start."})


class Receiver(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (Alertmanager webhook payload, version 4)"
        ALERTMANAGER = "alertmanager", "Send to an Alertmanager (POST /api/v2/alerts)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.URLField(
        max_length=500,
        help_text="The webhook's URL, or the Alertmanager's base URL (e.g. http://alertmanager:9093).",
    )
    secret_header_name = models.CharField(max_length=100, blank=True, default="",
                                          help_text="e.g. Authorization")
    secret_header_value = models.CharField(max_length=500, blank=True, default="",
                                           help_text="e.g. Bearer <token>")
    matchers = models.TextField(blank=True, default="",
                                help_text="Only alerts matching these label matchers (like a silence's); "
                                "empty = every alert.")
    group_by = models.JSONField(default=list, blank=True,
                                help_text='Labels that split notifications into groups, e.g. ["alertname", '
                                '"namespace"]; empty = ["alertname"]. Webhooks only: an Alertmanager groups itself.')
    group_wait = models.DurationField(default=timedelta(seconds=30))
    group_interval = models.DurationField(default=timedelta(minutes=5))
    repeat_interval = models.DurationField(default=timedelta(hours=4))
    send_resolved = models.BooleanField(default=True)
    timeout = models.DurationField(default=timedelta(seconds=10), help_text="Per request.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from metrics.alerts.silences import MatcherError, parse_matchers

        try:
            parse_matchers(self.matchers, allow_empty=True)
        except MatcherError as exc:
            raise ValidationError({"matchers": str(exc)}) from None
        if not isinstance(self.group_by, list) or not all(isinstance(x, str) for x in self.group_by):
            raise ValidationError({"group_by": 'A list of label names, e.g. ["alertname"].'})
        if self.timeout <= timedelta(0) or self.timeout > timedelta(minutes=1):
            raise ValidationError({"timeout": "Between 0 and 60 seconds."})


class NotificationGroup(models.Model):
    """Where one receiver's group of alerts stands: what it was last told, and when."""

    receiver = models.ForeignKey(Receiver, on_delete=models.CASCADE, related_name="groups")
    group_key = models.CharField(max_length=1000)
    group_labels = models.JSONField(default=dict)
    created = models.DateTimeField()
    last_flush_at = models.DateTimeField(null=True, blank=True)
    # fingerprint -> "firing", what the newest notification said was firing.
    notified = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["receiver", "group_key"], name="notificationgroup_unique"),
        ]


class Notification(models.Model):
    """The queue: one message to one receiver, sent in order, retried with backoff."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        EXPIRED = "expired"

    receiver = models.ForeignKey(Receiver, on_delete=models.CASCADE, related_name="notifications")
    group_key = models.CharField(max_length=1000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    alert_status = models.CharField(max_length=16, help_text="firing or resolved (the payload's status).")
    payload = models.JSONField()
    created = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    attempts = models.IntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["receiver", "status", "id"], name="notification_queue"),
        ]

    def __str__(self) -> str:
        return f"{self.receiver} {self.alert_status} {self.created:%Y-%m-%d %H:%M:%S}"


class DeliveryAttempt(models.Model):
    """The delivery log: every POST, its answer or error, and how long it took."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    time = models.DateTimeField()
    status_code = models.IntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    seconds = models.FloatField()

    class Meta:
        ordering = ["-time", "-id"]
