"""From the collector's data to a notification: a recorded pod list with a container in
CrashLoopBackOff and one OOM-killed, through the real collector code (fixture cgroup trees and
the pod list served over HTTP), ingest, evaluation and a webhook on loopback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.sources.podmeta import ApiServerSource, Metadata
from collector.tests.fixture_node import FIXTURES, FixtureNode, RecordedApi, batch_between
from collector.tests.layouts import V1, to_v2
from metrics.alerts import deliver, evaluate
from metrics.alerts.models import AlertRule, Receiver
from metrics.tests.alert_helpers import Receiver as HttpReceiver
from metrics.tests.factories import rfc3339, tick
from metrics.tests.ingest_helpers import post

pytestmark = pytest.mark.django_db


def collector_batch(tmp_path: Path, monkeypatch: Any, oom_finished: str) -> dict[str, Any]:
    podlist = json.loads((FIXTURES / "api/pods-worker-1-failing.json").read_text())
    # The recording's times are fixed; the OOM kill must fall inside the rule's window of "now".
    for item in podlist["items"]:
        for status in item["status"].get("containerStatuses") or []:
            terminated = (status.get("lastState") or {}).get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                terminated["finishedAt"] = oom_finished
    api = RecordedApi({"/api/v1/pods": (200, json.dumps(podlist).encode())})
    try:
        node = FixtureNode(tmp_path / "node", monkeypatch)
        meta = Metadata([ApiServerSource("worker-1", base_url=api.url, token_path="")])
        t0 = to_v2(V1 / "t0", tmp_path / "v2" / "t0")
        t1 = to_v2(V1 / "t1", tmp_path / "v2" / "t1")
        return batch_between(node, t0, t1, meta.get, meta.refresh)
    finally:
        api.close()


def test_a_crash_looping_pod_and_an_oom_killed_container_raise_their_alerts_from_collector_data(
        client, ingest_token, tmp_path, monkeypatch):
    http = HttpReceiver()
    try:
        Receiver.objects.create(name="team", url=http.url, group_wait=timedelta(0), group_by=["alertname", "pod"])
        now = tick(0)
        batch = collector_batch(tmp_path, monkeypatch, rfc3339(now - timedelta(minutes=6)))
        # The same node reporting 5 minutes apart (the fixture's one interval, twice).
        for end in (now - timedelta(minutes=5), now):
            batch["time"] = rfc3339(end)
            assert post(client, ingest_token, batch).status_code == 201, batch["time"]

        evaluate.run_cycle(now - timedelta(minutes=5))
        deliver.send_due(now - timedelta(minutes=5))
        evaluate.run_cycle(now)
        deliver.send_due(now)

        crash = AlertRule.objects.get(name="PodCrashLooping").instances.get()
        assert crash.state == "firing" and crash.fired_at == now  # pending first: `for` is 5 minutes
        assert crash.labels["pod"] == "web-7c9f8d6b5-x2x7q" and crash.labels["reason"] == "CrashLoopBackOff"
        assert crash.labels["node"] == "worker-1" and crash.labels["namespace"] == "shop"
        oom = AlertRule.objects.get(name="ContainerOOMKilled").instances.get()
        assert oom.state == "firing" and oom.labels["pod"] == "batch-29412345-8kq2d" and oom.value == 1
        not_ready = AlertRule.objects.get(name="PodNotRunning").instances.all()
        assert not not_ready.exists()  # the crash-looping pod's phase is still Running

        sent = {(b["groupLabels"]["alertname"], b["groupLabels"]["pod"]) for b in http.payloads()}
        assert ("PodCrashLooping", "web-7c9f8d6b5-x2x7q") in sent
        assert ("ContainerOOMKilled", "batch-29412345-8kq2d") in sent
        summaries = [a["annotations"]["summary"] for b in http.payloads() for a in b["alerts"]]
        assert "shop/web-7c9f8d6b5-x2x7q: a container is waiting in CrashLoopBackOff" in summaries
    finally:
        http.stop()
