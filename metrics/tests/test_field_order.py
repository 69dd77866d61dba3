"""Every read answer puts identity first (name, namespace, url) and `series` last, in lists and details."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from metrics.models import ApiToken
from metrics.tests.read_helpers import make_node, make_pod, pod_rows
from metrics.tokens import create_token


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_identity_comes_first_and_series_last_everywhere(reader):
    node = make_node("worker-1")
    pod = make_pod("web-1", "shop", node, deployment="web")
    end = timezone.now()
    pod_rows(pod, end - timedelta(minutes=5), end, 10)
    answers = {
        "/api/nodes/": "list", "/api/nodes/worker-1/?window=600": "detail",
        "/api/pods/": "list", "/api/namespaces/shop/pods/web-1/?window=600": "detail",
        "/api/namespaces/": "list", "/api/namespaces/shop/?window=600": "detail",
        "/api/deployments/": "list", "/api/namespaces/shop/deployments/web/?window=600": "detail",
    }
    orders = {}
    for url, kind in answers.items():
        response = reader.get(url)
        assert response.status_code == 200, (url, response.content)
        body = response.json()
        item = body["results"][0] if kind == "list" else body
        keys = list(item)
        orders[url] = keys
        assert keys[0] == "name", (url, keys)
        identity = [k for k in keys if k in ("name", "namespace", "url")]
        assert keys[: len(identity)] == identity, (url, keys)
        if kind == "detail":
            assert keys[-1] == "series", (url, keys)
            assert keys.index("usage") < keys.index("series")
        else:
            assert keys[-1] == "usage", (url, keys)


def test_the_api_root_describes_kubemonitor_and_links_every_kind(reader):
    page = reader.get("/api/", HTTP_ACCEPT="text/html").content.decode()
    assert "kubemonitor API" in page and "Api Root" not in page
    assert "Kubernetes CPU, memory" in page and "/api/docs/" in page
    links = reader.get("/api/").json()
    assert {"nodes", "pods", "namespaces", "deployments", "cluster"} <= set(links)
