"""Helpers for the alerting tests: samples written at a stepped clock, and a real HTTP receiver
on loopback that records what it is sent and can go down and come back on the same port."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metrics.alerts import deliver, evaluate
from metrics.models import Node, Pod, PodSample

BASE = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
INTERVAL = 10.0


def make_node(name: str = "worker-1", last_seen: datetime = BASE) -> Node:
    return Node.objects.create(name=name, first_seen=BASE - timedelta(days=1), last_seen=last_seen,
                               cpu_capacity_cores=8.0, memory_total_bytes=32 * 2**30, interval_seconds=INTERVAL)


def make_pod(node: Node, name: str, namespace: str = "shop", *, cpu_limit: float | None = 1.0,
             deployment: str | None = None, phase: str | None = "Running", ready: bool | None = True,
             labels: dict[str, str] | None = None, last_seen: datetime | None = None) -> Pod:
    return Pod.objects.create(
        uid=f"uid-{namespace}-{name}", name=name, namespace=namespace, node=node, deployment=deployment,
        labels=labels or {}, cpu_limit_cores=cpu_limit, memory_limit_bytes=2**30, phase=phase, ready=ready,
        first_seen=BASE - timedelta(days=1), last_seen=last_seen or BASE + timedelta(days=1),
    )


def cpu(pod: Pod, percent_of_limit: float, start: datetime, end: datetime) -> None:
    """Samples every INTERVAL seconds in [start, end) using `percent_of_limit` of the CPU limit."""
    rows = []
    t = start
    limit = pod.cpu_limit_cores or 1.0
    while t < end:
        rows.append(PodSample(
            time=t, interval_seconds=INTERVAL, pod=pod, node_id=pod.node_id, namespace=pod.namespace,
            deployment=pod.deployment, cpu_seconds=limit * INTERVAL * percent_of_limit / 100,
            memory_working_set_bytes=2**28, cpu_limit_cores=pod.cpu_limit_cores, memory_limit_bytes=2**30,
        ))
        t += timedelta(seconds=INTERVAL)
    PodSample.objects.bulk_create(rows)


def cycle(now: datetime, send: bool = True) -> evaluate.CycleResult:
    result = evaluate.run_cycle(now)
    if send:
        deliver.send_due(now)
    return result


class Receiver:
    """A webhook / Alertmanager stand-in: a real HTTP server on 127.0.0.1 keeping every body."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.bodies: list[tuple[str, dict[str, str], Any]] = []
        self.status = status
        self.server: ThreadingHTTPServer | None = None
        self.port = port
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                receiver.bodies.append((self.path, dict(self.headers), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def payloads(self) -> list[Any]:
        return [body for _, _, body in self.bodies]


def admin_rows() -> None:
    """One row of every alerting model (the admin tests open each model's pages)."""
    from metrics.alerts.models import (
        AlertRule, DeliveryAttempt, Notification, NotificationGroup, Receiver as ReceiverModel, Silence,
    )

    rule = AlertRule.objects.create(name="AdminTest", metric="pod_not_ready", threshold=0)
    node = Node.objects.first() or make_node()
    pod = Pod.objects.first() or make_pod(node, "admin-test")
    rule.instances.create(fingerprint="0" * 16, labels={"pod": pod.name}, state="firing", severity="warning",
                          started_at=BASE, last_true_at=BASE, value=1, peak_value=1)
    Silence.objects.create(matchers='alertname="AdminTest"', starts_at=BASE, ends_at=BASE + timedelta(hours=1),
                           author="ops")
    receiver = ReceiverModel.objects.create(name="admin-test", url="http://127.0.0.1:9/")
    NotificationGroup.objects.create(receiver=receiver, group_key="{}:{}", created=BASE)
    notification = Notification.objects.create(receiver=receiver, group_key="{}:{}", payload={}, created=BASE,
                                               next_attempt_at=BASE, alert_status="firing")
    DeliveryAttempt.objects.create(notification=notification, time=BASE, error="refused", seconds=0.01)
