"""One evaluation cycle: every enabled rule's query, then each entity's state.

States per (rule, fingerprint): pending while the condition has held for less than the rule's
`for`, firing once it has, resolved once it has been clear for `keep_firing_for`. A pending
alert whose condition clears is dropped (it never fired, so nobody hears of it). Everything lives
in the database, so a restarted evaluator carries on where the last one stopped, and the cycle
runs under a transaction-level advisory lock, so of two evaluators at once only one evaluates.

`now` is a parameter throughout: tests step a clock instead of sleeping.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from metrics.alerts import deliver
from metrics.alerts.catalogue import METRICS, Query, Ratio, compare, labels_of, pod_ratio, shared_sums_sql
from metrics.alerts.models import AlertInstance, AlertRule, AlertState, Notification
from metrics.alerts.silences import Silences

log = logging.getLogger("metrics.alerts")

# pg_try_advisory_xact_lock key of the evaluation cycle ("kmal" in ASCII).
LOCK_KEY = 0x6B6D616C
# History kept: resolved alerts and sent notifications older than this are deleted.
HISTORY = timedelta(days=30)


@dataclass
class CycleResult:
    skipped: bool = False  # another evaluator held the lock
    rules: int = 0
    pending: int = 0
    fired: int = 0
    resolved: int = 0
    notifications: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per rule


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


class _Values(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # an unknown placeholder stays as written


def render(template: str, values: dict[str, Any]) -> str:
    """str.format with the alert's labels, entity and value; never raises on a bad template."""
    if not template:
        return ""
    try:
        return string.Formatter().vformat(template, (), _Values(values))
    except (ValueError, TypeError, IndexError, AttributeError, KeyError):
        return template


def entity_of(level: str, labels: dict[str, str]) -> str:
    if level == "pod":
        return f"{labels.get('namespace', '')}/{labels.get('pod', '')}"
    if level == "deployment":
        return f"{labels.get('namespace', '')}/{labels.get('deployment', '')}"
    if level == "cluster":
        return "cluster"
    if level == "gpu":
        return f"{labels.get('node', '')}/{labels.get('gpu', '')}"
    if level == "model_server":  # a serving Deployment, or a pod no Deployment owns
        return f"{labels.get('namespace', '')}/{labels.get('deployment') or labels.get('pod', '')}"
    return labels.get(level, labels.get("node", ""))


def annotations_for(rule: AlertRule, labels: dict[str, str], value: float) -> dict[str, str]:
    values: dict[str, Any] = {
        "namespace": "", "pod": "", "node": "", "deployment": "", "reason": "", "model_server": "",
        **labels, "entity": entity_of(rule.level, labels), "value": value, "threshold": rule.threshold,
        "rule": rule.name,
    }
    annotations = {"summary": render(rule.summary, values), "description": render(rule.description, values)}
    if rule.runbook_url:
        annotations["runbook_url"] = rule.runbook_url
    return {k: v for k, v in annotations.items() if v}


Sums = dict[timedelta, dict[Ratio, tuple[str, str, str]]]


SUMS_TABLE = "km_alert_pod_sums"
# work_mem of the shared scan only. Its per-pod sums (about 1 kB a pod) overflowed the 4 MB
# default at 10,000 pods, so PostgreSQL sorted the window's samples on disk (an external merge,
# a third of the scan's time in bench/alerts.py) instead of hashing them in memory.
SUMS_WORK_MEM = "64MB"


def shared_sums(rules: list[AlertRule], now: datetime) -> Sums:
    """One scan of the pod samples into per-pod sums for every rule that reads them.

    Twenty rules over 10,000 pods would otherwise each read the same samples (bench/alerts.py);
    each rule's own query then reads 10,000 rows of sums instead of every sample.
    """
    terms: list[tuple[Ratio, datetime]] = []
    for rule in rules:
        metric = METRICS.get(rule.metric)
        ratio = pod_ratio(metric, rule.level) if metric is not None and rule.enabled else None
        if ratio is not None and (ratio, now - rule.window) not in terms:
            terms.append((ratio, now - rule.window))
    if not terms:
        return {}
    sql, params, names = shared_sums_sql(SUMS_TABLE, terms)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SUMS_TABLE}")
        cursor.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [SUMS_WORK_MEM])
        row = cursor.fetchone()
        cursor.execute(sql, [*params, now])
        if row is not None:  # back to the session's value for the rules' own queries
            cursor.execute("SELECT set_config('work_mem', %s, true)", [row[0]])
    sums: Sums = {}
    for (ratio, since), (num, den) in zip(terms, names):
        sums.setdefault(now - since, {})[ratio] = (SUMS_TABLE, num, den)
    return sums


# The comparison in SQL: a rule returns only the entities crossing its threshold, not every pod's
# value to compare here (10,000 rows per rule in bench/alerts.py). compare() still checks each
# row, so PostgreSQL's NaN ordering (greater than any number) cannot let one through.
_SQL_COMPARISON = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "==": "=", "!=": "<>"}


def query_rule(rule: AlertRule, now: datetime, sums: Sums | None = None) -> list[tuple[Any, ...]]:
    """The rule's metric for every selected entity crossing its threshold: one set-based query."""
    metric = METRICS[rule.metric]
    assert metric.build is not None
    sql, params = metric.build(Query(
        since=now - rule.window, now=now, level=rule.level, namespace=rule.namespace,
        deployment=rule.deployment, node=rule.node, pod_labels=rule.pod_labels or None,
        model_server_kind=rule.model_server_kind,
        sums=(sums or {}).get(rule.window),
    ))
    sql = f"SELECT * FROM ({sql}) crossing WHERE crossing.value {_SQL_COMPARISON[rule.comparison]} %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, rule.threshold])
        return list(cursor.fetchall())


def run_cycle(now: datetime | None = None, *, dispatch: bool = True) -> CycleResult:
    """Evaluate every rule and queue the notifications due, in one transaction under the lock."""
    now = now or timezone.now()
    result = CycleResult()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_KEY])
            row = cursor.fetchone()
        if not (row and row[0]):
            result.skipped = True
            return result
        silences = Silences(now)
        rules = list(AlertRule.objects.order_by("id"))
        started = time.perf_counter()
        sums = shared_sums(rules, now)
        result.seconds["(shared pod sums)"] = time.perf_counter() - started
        for rule in rules:
            started = time.perf_counter()
            _evaluate_rule(rule, now, silences, result, sums)
            result.seconds[rule.name] = time.perf_counter() - started
        if dispatch:
            result.notifications = deliver.dispatch(now)
        _prune(now)
    return result


def _evaluate_rule(rule: AlertRule, now: datetime, silences: Silences, result: CycleResult, sums: Sums) -> None:
    active = {i.fingerprint: i for i in rule.instances.exclude(state=AlertState.RESOLVED)}
    metric = METRICS.get(rule.metric)
    error = ""
    current: dict[str, tuple[dict[str, str], float]] = {}
    if not rule.enabled:
        pass  # every active alert of a disabled rule resolves (below)
    elif metric is None or metric.build is None:
        error = f"Needs {metric.needs}; not evaluated until it is stored." if metric else "Unknown metric."
    else:
        result.rules += 1
        try:
            with transaction.atomic():  # a savepoint: a failing rule must not abort the cycle
                rows = query_rule(rule, now, sums)
        except DatabaseError as exc:
            error = f"Query failed: {exc}"[:500]
            log.warning("alert rule %s: %s", rule.name, error)
            result.errors[rule.name] = error
            rows = None
        if rows is None:
            _save_rule_status(rule, now, error)
            return  # unknown is not clear: keep every state as it is
        for row in rows:
            value = row[-1]
            if value is None or not compare(float(value), rule.comparison, rule.threshold):
                continue
            labels = {**labels_of(row, rule.level, metric), **rule.labels, "alertname": rule.name, "severity": rule.severity}
            current[fingerprint(labels)] = (labels, float(value))
    _save_rule_status(rule, now, error)

    create: list[AlertInstance] = []
    update: list[AlertInstance] = []
    drop: list[int] = []
    for fp, (labels, value) in current.items():
        instance = active.get(fp)
        if instance is None:
            instance = AlertInstance(
                rule=rule, fingerprint=fp, labels=labels, state=AlertState.PENDING,
                severity=rule.severity, namespace=labels.get("namespace", ""), node=labels.get("node", ""),
                started_at=now, last_true_at=now, value=value, peak_value=value,
            )
            create.append(instance)
        else:
            instance.value = value
            instance.peak_value = _peak(instance.peak_value, value, rule.comparison)
            instance.last_true_at = now
            update.append(instance)
        instance.annotations = annotations_for(rule, labels, value)
        instance.silenced = silences.mutes(labels)
        if instance.state == AlertState.PENDING and now - instance.started_at >= rule.for_duration:
            instance.state = AlertState.FIRING
            instance.fired_at = now
            result.fired += 1
        elif instance.state == AlertState.PENDING:
            result.pending += 1
    for fp, instance in active.items():
        if fp in current:
            continue
        if instance.state == AlertState.PENDING:
            drop.append(instance.pk)
        elif not rule.enabled or now - instance.last_true_at >= rule.keep_firing_for:
            instance.state = AlertState.RESOLVED
            instance.ended_at = now
            update.append(instance)
            result.resolved += 1
        else:
            instance.silenced = silences.mutes(instance.labels)  # still firing, kept by keep_firing_for
            update.append(instance)
    if drop:
        AlertInstance.objects.filter(pk__in=drop).delete()
    if create:
        AlertInstance.objects.bulk_create(create, batch_size=2000)
    if update:
        _update(update)


_UPDATE_SQL = """
UPDATE metrics_alertinstance i SET
    state = u.state, value = u.value, peak_value = u.peak_value, last_true_at = u.last_true_at,
    fired_at = u.fired_at, ended_at = u.ended_at, annotations = u.annotations::jsonb, silenced = u.silenced
FROM unnest(%s::int8[], %s::text[], %s::float8[], %s::float8[], %s::timestamptz[], %s::timestamptz[],
            %s::timestamptz[], %s::text[], %s::bool[])
    AS u(id, state, value, peak_value, last_true_at, fired_at, ended_at, annotations, silenced)
WHERE i.id = u.id
"""


def _update(instances: list[AlertInstance]) -> None:
    """One UPDATE from arrays for every changed alert: Django's bulk_update builds a CASE per row
    and column, which took seconds for 10,000 alerts (bench/alerts.py)."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for i in instances:
        for column, value in zip(columns, (i.pk, i.state, i.value, i.peak_value, i.last_true_at, i.fired_at,
                                           i.ended_at, json.dumps(i.annotations), i.silenced)):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL, columns)


def _peak(peak: float | None, value: float, comparison: str) -> float:
    if peak is None:
        return value
    # The worst value seen: the highest for "above" rules, the lowest for "below" ones.
    return min(peak, value) if comparison in ("<", "<=") else max(peak, value)


def _save_rule_status(rule: AlertRule, now: datetime, error: str) -> None:
    AlertRule.objects.filter(pk=rule.pk).update(last_evaluated=now, last_error=error)


def _prune(now: datetime) -> None:
    AlertInstance.objects.filter(state=AlertState.RESOLVED, ended_at__lt=now - HISTORY).delete()
    Notification.objects.exclude(status=Notification.Status.PENDING).filter(created__lt=now - HISTORY).delete()
