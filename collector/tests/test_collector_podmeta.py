"""Pod metadata from a recorded API server / kubelet pod list and from /var/log/pods names."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from fixture_node import FIXTURES, RecordedApi, roots_for
from layouts import V1

from collector.sources import podmeta
from collector.sources.podmeta import (
    ApiServerSource,
    KubeletSource,
    Metadata,
    PodLogsSource,
    deployment_from_replicaset,
    parse_pod_list,
)

PODLIST = (FIXTURES / "api/pods-worker-1.json").read_bytes()
PODS = [line.split() for line in (V1 / "pods.txt").read_text().splitlines()]
WEB, BATCH, AGENT, GONE = (PODS[0][2], PODS[3][2], PODS[6][2], PODS[8][2])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Any:
    server = RecordedApi({"/api/v1/pods": (200, PODLIST)})
    yield server
    server.close()


def test_the_pod_list_gives_owner_deployment_qos_labels_and_containers() -> None:
    pods = parse_pod_list(PODLIST)
    web = pods[WEB]
    assert (web.name, web.namespace, web.owner_kind, web.owner_name, web.deployment, web.qos) == (
        "web-7c9f8d6b5-x2x7q", "shop", "ReplicaSet", "web-7c9f8d6b5", "web", "Burstable")
    assert web.labels["app.kubernetes.io/name"] == "web"
    assert web.containers[PODS[1][5]] == ("app", "registry.example.com/shop/web:1.4.2")
    assert pods[AGENT].owner_kind == "DaemonSet" and pods[AGENT].deployment is None
    assert pods[AGENT].host_network is True
    assert pods[BATCH].owner_kind == "Job" and pods[BATCH].qos == "BestEffort"


def test_a_replicaset_name_without_the_template_hash_gives_no_deployment() -> None:
    assert deployment_from_replicaset("web-7c9f8d6b5", {"pod-template-hash": "7c9f8d6b5"}) == "web"
    assert deployment_from_replicaset("web-7c9f8d6b5", {}) is None
    assert deployment_from_replicaset("cache-abc", {"pod-template-hash": "7c9f8d6b5"}) is None


def test_the_api_server_is_asked_once_for_this_nodes_pods_and_then_served_from_cache(
        api: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token-1\n")
    clock = Clock()
    source = ApiServerSource("worker-1", base_url=api.url, token_path=str(token), clock=clock)
    meta = Metadata([source])
    for _ in range(5):  # five cycles, all pods known
        meta.refresh({WEB, BATCH, AGENT})
        clock.now += 10
    assert len(api.requests) == 1
    path, headers = api.requests[0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert query["fieldSelector"] == ["spec.nodeName=worker-1"]
    assert query["resourceVersion"] == ["0"]
    assert headers["Authorization"] == "Bearer sa-token-1"
    assert meta.get(WEB).name == "web-7c9f8d6b5-x2x7q"


def test_an_unknown_uid_relists_early_but_at_most_every_thirty_seconds(api: Any) -> None:
    clock = Clock()
    meta = Metadata([ApiServerSource("worker-1", base_url=api.url, token_path="", clock=clock)])
    meta.refresh({WEB})
    for _ in range(3):  # a pod only the cgroups know, three 10 s cycles
        clock.now += 10
        meta.refresh({WEB, "0a0a0a0a-0000-4000-8000-000000000000"})
    assert len(api.requests) == 2  # the first list, then one early re-list at +30 s
    clock.now += podmeta.RELIST_SECONDS
    meta.refresh({WEB})
    assert len(api.requests) == 3  # the periodic re-list


def test_an_api_failure_keeps_the_last_list_and_is_reported(api: Any) -> None:
    clock = Clock()
    source = ApiServerSource("worker-1", base_url=api.url, token_path="", clock=clock)
    meta = Metadata([source])
    meta.refresh({WEB})
    api.routes["/api/v1/pods"] = (500, b'{"kind":"Status","code":500}')
    clock.now += podmeta.RELIST_SECONDS
    status = meta.refresh({WEB})
    assert status["metadata_apiserver"]["ok"] is False
    assert "500" in status["metadata_apiserver"]["error"]
    assert meta.get(WEB).namespace == "shop"


def test_the_replicaset_owner_is_read_when_the_hash_label_is_missing(tmp_path: Path) -> None:
    listing = json.loads(PODLIST)
    for item in listing["items"]:
        item["metadata"]["labels"].pop("pod-template-hash", None)
    rs = {"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": {
        "name": "web-7c9f8d6b5", "namespace": "shop", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "x",
             "controller": True, "blockOwnerDeletion": True}]}}
    server = RecordedApi({
        "/api/v1/pods": (200, json.dumps(listing).encode()),
        "/apis/apps/v1/namespaces/shop/replicasets/web-7c9f8d6b5": (200, json.dumps(rs).encode()),
    })
    try:
        meta = Metadata([ApiServerSource("worker-1", base_url=server.url, token_path="")])
        meta.refresh({WEB})
        meta.refresh({WEB})
        assert meta.get(WEB).deployment == "web"
        assert sum("replicasets" in p for p, _ in server.requests) == 1
    finally:
        server.close()


def test_the_kubelet_pod_list_is_the_second_source(api: Any) -> None:
    kubelet = RecordedApi({"/pods": (200, PODLIST)})
    try:
        failing = ApiServerSource("worker-1", base_url="http://127.0.0.1:9", token_path="")
        meta = Metadata([failing, KubeletSource(kubelet.url, token_path="")])
        status = meta.refresh({WEB})
        assert status["metadata_apiserver"]["ok"] is False
        assert status["metadata_kubelet"]["ok"] is True
        assert meta.get(WEB).deployment == "web"
    finally:
        kubelet.close()


def test_pod_log_directories_give_names_and_container_ids() -> None:
    source = PodLogsSource(roots_for(V1 / "t0"))
    source.refresh(True)
    web = source.pods[WEB]
    assert web.namespace == "shop" and web.name == PODS[0][1]
    assert web.container_names == ["app", "proxy"]
    assert web.containers[PODS[1][5]] == ("app", "")
    assert PODS[0][5] not in web.containers  # no log link for the sandbox


def test_the_first_source_that_knows_a_pod_wins(api: Any) -> None:
    meta = Metadata([ApiServerSource("worker-1", base_url=api.url, token_path=""),
                     PodLogsSource(roots_for(V1 / "t0"))])
    meta.refresh({WEB, GONE})
    assert meta.get(WEB).name == "web-7c9f8d6b5-x2x7q"  # the API's name
    assert meta.get(GONE).name == PODS[8][1]  # only the log directories still know it
    assert meta.get("0a0a0a0a-0000-4000-8000-000000000000") is None


def test_a_container_the_list_does_not_know_yet_triggers_an_early_relist(api: Any) -> None:
    clock = Clock()
    meta = Metadata([ApiServerSource("worker-1", base_url=api.url, token_path="", clock=clock)])
    known = set(parse_pod_list(PODLIST)[WEB].containers)
    meta.refresh({WEB}, {WEB: known})
    clock.now += 40
    meta.refresh({WEB}, {WEB: known})
    assert len(api.requests) == 1
    meta.refresh({WEB}, {WEB: known | {"f" * 64}})  # a restarted container's new id
    assert len(api.requests) == 2
