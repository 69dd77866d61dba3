"""From alert states to messages: grouping (Alertmanager's group_wait / group_interval /
repeat_interval), payloads, and the notification queue drained with timeouts.

dispatch() runs inside the evaluation cycle's transaction and only writes rows (NotificationGroup,
Notification), so it costs no network time. send_due() runs after it, outside that transaction:
it POSTs each receiver's oldest due notification first (one receiver at a time under a row lock,
so two evaluators never send one notification twice), retries failures with backoff and records
every attempt. A dead receiver costs at most its timeout per cycle and never delays evaluation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Callable

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from metrics.alerts.models import (
    AlertInstance, AlertState, DeliveryAttempt, Notification, NotificationGroup, Receiver,
)
from metrics.alerts.silences import MatcherError, matches_all, parse_matchers

log = logging.getLogger("metrics.alerts")

# Alertmanager's clients re-send active alerts every 30 s to 3 min (alertmanager docs/clients.md);
# each sent alert is valid for 4 such intervals, as Prometheus does, so an evaluator that stops
# sending lets them resolve on their own.
ALERTMANAGER_RESEND = timedelta(minutes=1)
ALERTMANAGER_VALID_FOR = 4 * ALERTMANAGER_RESEND
# Retries: 10 s, 20 s, 40 s, ... at most 5 minutes apart, for at most MAX_AGE.
BACKOFF_FIRST = 10.0
BACKOFF_MAX = 300.0
MAX_AGE = timedelta(days=3)
# Each cycle sends for at most this long, so evaluation comes round on time.
SEND_BUDGET = 20.0
ZERO_TIME = "0001-01-01T00:00:00Z"


def _time(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Timings:
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta


def timings(receiver: Receiver) -> Timings:
    if receiver.kind == Receiver.Kind.ALERTMANAGER:
        # An Alertmanager groups and repeats itself; it wants every change at once and the
        # active alerts re-sent while they fire.
        return Timings((), timedelta(0), timedelta(0), ALERTMANAGER_RESEND)
    return Timings(tuple(receiver.group_by or ["alertname"]), receiver.group_wait, receiver.group_interval,
                   receiver.repeat_interval)


def group_key(group_labels: dict[str, str]) -> str:
    # Alertmanager's form: the route's matchers (none here), then the group's labels.
    return "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"


def external_url() -> str:
    return str(getattr(settings, "ALERTS_EXTERNAL_URL", "") or "").rstrip("/")


def generator_url(instance: AlertInstance) -> str:
    return f"{external_url()}/admin/metrics/alertrule/{instance.rule_id}/change/"


def _alert(instance: AlertInstance, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": instance.labels,
        "annotations": instance.annotations,
        "startsAt": _time(instance.started_at),
        "endsAt": _time(instance.ended_at) if status == "resolved" and instance.ended_at else ZERO_TIME,
        "generatorURL": generator_url(instance),
        "fingerprint": instance.fingerprint,
    }


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    common = dict(dicts[0])
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if d.get(k) == v}
    return common


def webhook_payload(receiver: Receiver, key: str, group_labels: dict[str, str],
                    firing: list[AlertInstance], resolved: list[AlertInstance]) -> dict[str, Any]:
    """The Alertmanager webhook payload, version 4."""
    alerts = [_alert(i, "firing") for i in firing] + [_alert(i, "resolved") for i in resolved]
    return {
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver.name,
        "groupLabels": group_labels,
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url(),
        "alerts": alerts,
    }


def alertmanager_payload(firing: list[AlertInstance], resolved: list[AlertInstance], now: datetime) -> list[dict[str, Any]]:
    """POST /api/v2/alerts body: postable alerts; firing ones valid for ALERTMANAGER_VALID_FOR."""
    until = _time(now + ALERTMANAGER_VALID_FOR)
    out = []
    for instance in firing:
        out.append({"labels": instance.labels, "annotations": instance.annotations,
                    "startsAt": _time(instance.started_at), "endsAt": until,
                    "generatorURL": generator_url(instance)})
    for instance in resolved:
        out.append({"labels": instance.labels, "annotations": instance.annotations,
                    "startsAt": _time(instance.started_at), "endsAt": _time(instance.ended_at or now),
                    "generatorURL": generator_url(instance)})
    return out


# --- dispatch: states -> queued notifications ------------------------------------------------------


def dispatch(now: datetime) -> int:
    """Queue the notifications due at `now`; returns how many. Runs in the cycle's transaction."""
    receivers = list(Receiver.objects.filter(enabled=True))
    if not receivers:
        return 0
    firing = [i for i in AlertInstance.objects.filter(state=AlertState.FIRING, silenced=False)]
    existing: dict[tuple[int, str], NotificationGroup] = {
        (g.receiver_id, g.group_key): g for g in NotificationGroup.objects.filter(receiver__in=receivers)
    }
    queued = 0
    for receiver in receivers:
        try:
            route = parse_matchers(receiver.matchers, allow_empty=True)
        except MatcherError:
            continue  # the admin validates; a receiver saved around it receives nothing
        t = timings(receiver)
        groups: dict[str, tuple[dict[str, str], list[AlertInstance]]] = {}
        for instance in firing:
            if route and not matches_all(route, instance.labels):
                continue
            labels = {name: instance.labels[name] for name in t.group_by if name in instance.labels}
            groups.setdefault(group_key(labels), (labels, []))[1].append(instance)
        keys = set(groups) | {k for (rid, k) in existing if rid == receiver.pk}
        for key in sorted(keys):
            labels, alerts = groups.get(key, ({}, []))
            group = existing.get((receiver.pk, key))
            queued += _flush_if_due(receiver, t, key, labels, alerts, group, now)
    return queued


def _flush_if_due(receiver: Receiver, t: Timings, key: str, labels: dict[str, str], alerts: list[AlertInstance],
                  group: NotificationGroup | None, now: datetime) -> int:
    firing_fps = {a.fingerprint for a in alerts}
    if group is None:
        if not alerts:
            return 0
        group = NotificationGroup.objects.create(receiver=receiver, group_key=key, group_labels=labels,
                                                 created=now, notified={})
    if group.last_flush_at is None:
        if not alerts:  # fired and cleared (or silenced) before group_wait: nothing to say
            group.delete()
            return 0
        due = now >= group.created + t.group_wait
    else:
        changed = firing_fps != set(group.notified)
        due = (changed and now >= group.last_flush_at + t.group_interval) or (
            bool(alerts) and now >= group.last_flush_at + t.repeat_interval)
    if not due:
        return 0
    resolved: list[AlertInstance] = []
    gone = [fp for fp in group.notified if fp not in firing_fps]
    if gone and receiver.send_resolved and group.last_flush_at is not None:
        # Only alerts that resolved since the group was last told they fire; one still firing
        # but silenced is muted, not resolved.
        resolved = list(
            AlertInstance.objects.filter(fingerprint__in=gone, state=AlertState.RESOLVED,
                                         ended_at__gte=group.last_flush_at)
            .order_by("fingerprint", "-ended_at").distinct("fingerprint")
        )
    queued = 0
    if alerts or resolved:
        _enqueue(receiver, key, labels, alerts, resolved, now)
        queued = 1
    if alerts:
        group.last_flush_at = now
        group.notified = {fp: "firing" for fp in sorted(firing_fps)}
        group.group_labels = labels
        group.save()
    else:
        group.delete()  # nothing fires in it any more; a new alert starts a new group (group_wait)
    return queued


def _enqueue(receiver: Receiver, key: str, labels: dict[str, str], firing: list[AlertInstance],
             resolved: list[AlertInstance], now: datetime) -> None:
    firing = sorted(firing, key=lambda i: (i.started_at, i.fingerprint))
    resolved = sorted(resolved, key=lambda i: (i.started_at, i.fingerprint))
    payload: Any
    if receiver.kind == Receiver.Kind.ALERTMANAGER:
        payload = alertmanager_payload(firing, resolved, now)
        payload = _supersede(receiver, payload, {i.fingerprint for i in firing})
    else:
        payload = webhook_payload(receiver, key, labels, firing, resolved)
    Notification.objects.create(
        receiver=receiver, group_key=key, payload=payload, created=now, next_attempt_at=now,
        alert_status="firing" if firing else "resolved",
    )


def _supersede(receiver: Receiver, payload: list[dict[str, Any]], firing: set[str]) -> list[dict[str, Any]]:
    """An Alertmanager only needs the newest state: unsent older messages are folded into this one
    (their resolved alerts kept), so a receiver back from an outage gets one current message."""
    from metrics.alerts.evaluate import fingerprint

    older = list(Notification.objects.filter(receiver=receiver, status=Notification.Status.PENDING).order_by("id"))
    if not older:
        return payload
    seen = {fingerprint(a["labels"]) for a in payload}
    extra = []
    for notification in older:
        for alert in notification.payload:
            fp = fingerprint(alert["labels"])
            ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
            if fp not in seen and fp not in firing and ends <= notification.created:  # resolved then
                extra.append(alert)
                seen.add(fp)
        notification.status = Notification.Status.EXPIRED
        notification.last_error = "Superseded by a newer message to this Alertmanager."
        notification.save(update_fields=["status", "last_error"])
    return payload + extra


# --- sending -------------------------------------------------------------------------------------


@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MAX))


def _post(receiver: Receiver, payload: Any) -> tuple[int | None, str]:
    url = receiver.url
    if receiver.kind == Receiver.Kind.ALERTMANAGER:
        url = url.rstrip("/") + "/api/v2/alerts"
    headers = {"User-Agent": "kubemonitor-alerts"}
    if receiver.secret_header_name:
        headers[receiver.secret_header_name] = receiver.secret_header_value
    try:
        response = requests.post(url, json=payload, headers=headers,
                                 timeout=receiver.timeout.total_seconds(), allow_redirects=False)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def send_due(now: datetime | None = None, budget: float = SEND_BUDGET,
             clock: Callable[[], float] = time.monotonic) -> SendResult:
    """Send every receiver's due notifications, oldest first, within `budget` seconds.

    `now` (default: the current time, read for each message) decides what is due and when a
    failure is retried; tests pass a stepped clock.
    """
    result = SendResult()
    deadline = clock() + budget
    for receiver_id in Receiver.objects.filter(
        notifications__status=Notification.Status.PENDING
    ).values_list("id", flat=True).distinct():
        while clock() < deadline:
            outcome = _send_next(receiver_id, now or timezone.now())
            if outcome is None:
                break
            if outcome:
                result.sent += 1
            else:
                result.failed += 1
                break  # keep this receiver's order: the next message waits for this one
    return result


def _send_next(receiver_id: int, now: datetime) -> bool | None:
    """Send one receiver's oldest pending notification if due; None when there is nothing to do."""
    with transaction.atomic():
        # The receiver's row lock makes one sender per receiver: a second evaluator skips it.
        receiver = Receiver.objects.select_for_update(skip_locked=True).filter(pk=receiver_id).first()
        if receiver is None or not receiver.enabled:
            return None
        notification = (Notification.objects.filter(receiver=receiver, status=Notification.Status.PENDING)
                        .order_by("id").first())
        if notification is None or notification.next_attempt_at > now:
            return None
        if now - notification.created > MAX_AGE:
            notification.status = Notification.Status.EXPIRED
            notification.save(update_fields=["status"])
            return False
        started = time.perf_counter()
        status_code, error = _post(receiver, notification.payload)
        DeliveryAttempt.objects.create(notification=notification, time=now, status_code=status_code,
                                       error=error, seconds=round(time.perf_counter() - started, 6))
        notification.attempts += 1
        if not error:
            notification.status = Notification.Status.SENT
            notification.sent_at = now
            notification.last_error = ""
        else:
            notification.next_attempt_at = now + backoff(notification.attempts)
            notification.last_error = error
            log.warning("alert receiver %s: %s (attempt %d)", receiver.name, error, notification.attempts)
        notification.save(update_fields=["attempts", "status", "sent_at", "last_error", "next_attempt_at"])
        return not error
