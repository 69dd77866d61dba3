"""The dashboard's server side: its pages, the pods table and the views that wait for an API.

What the pages draw in a browser is tested in test_dashboard_browser.py (real Chromium).
"""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from metrics import series
from metrics.models import Pod
from metrics.tests.factories import make_node, make_pod, make_pod_samples

PAGES = [
    "/", "/nodes/", "/nodes/worker-1/", "/namespaces/", "/namespaces/shop/",
    "/namespaces/shop/deployments/web/", "/namespaces/shop/pods/web-1/", "/pods/",
]


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    # Deployments serve the hashed names collectstatic wrote; tests have no collectstatic run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def client(db) -> Client:
    c = Client()
    c.force_login(User.objects.create_user("carol", password="x"))
    return c


@pytest.fixture
def shop(db) -> dict[str, Pod]:
    node = make_node("worker-1")
    now = timezone.now()
    pods = {
        "web-1": make_pod(node, "web-1", namespace="shop", deployment="web", cpu_limit_cores=1.0),
        "web-2": make_pod(node, "web-2", namespace="shop", deployment="web"),
        "db-0": make_pod(node, "db-0", namespace="data"),
        "old": make_pod(node, "old-job", namespace="shop", seen=now - timedelta(hours=2)),
    }
    make_pod_samples(pods["web-1"], now - timedelta(minutes=3), now, cpu_cores=0.5)
    make_pod_samples(pods["web-2"], now - timedelta(minutes=3), now, cpu_cores=0.1)
    make_pod_samples(pods["db-0"], now - timedelta(minutes=3), now, cpu_cores=0.9)
    return pods


def rows(response) -> list[str]:
    """Pod names in the pods table, in order."""
    table = response.content.decode().split('id="pods-table"', 1)[1]
    return re.findall(r'<td><a href="/namespaces/[^/]+/pods/[^/]+/">([^<]+)</a></td>', table)


@pytest.mark.parametrize("url", PAGES)
def test_it_sends_anonymous_visitors_to_the_login(db, url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/admin/login/?next={url}")


@pytest.mark.parametrize("url", PAGES)
def test_every_page_renders_with_the_chart_library_from_this_server(client: Client, shop, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'src="/static/vendor/uplot/uPlot.iife.min.js"' in body
    assert 'src="/static/metrics/core.js"' in body and 'src="/static/metrics/pages.js"' in body
    # No inline script: the CSP (metrics/csp.py) would block it.
    for tag in re.findall(r"<script[^>]*>", body):
        assert "src=" in tag, tag


def test_the_pages_carry_every_point_field_with_its_unit(client: Client, shop) -> None:
    body = client.get("/").content.decode()
    data = re.search(r'<body[^>]* data-points="([^"]*)"', body)
    assert data
    fields = {p["name"]: p["unit"] for p in json.loads(html.unescape(data.group(1)))}
    assert fields == {f.name: f.unit for f in series.POINTS}


def test_an_empty_installation_says_what_to_do(client: Client) -> None:
    assert "manage.py loaddemo" in client.get("/").content.decode()
    assert "No pods match" in client.get("/pods/").content.decode()


def test_it_serves_anonymous_visitors_when_reads_are_open(db, settings) -> None:
    settings.ALLOW_ANONYMOUS_READS = True
    assert Client().get("/").status_code == 200


@pytest.mark.parametrize("url", [
    "/nodes/nope/", "/namespaces/nope/", "/namespaces/shop/deployments/nope/", "/namespaces/shop/pods/nope/",
])
def test_it_answers_404_for_what_does_not_exist(client: Client, shop, url: str) -> None:
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("name", ["vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css", "metrics/core.js", "metrics/pages.js"])
def test_whitenoise_serves_the_scripts_and_the_chart_library(db, name: str) -> None:
    response = Client().get(f"/static/{name}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert len(body) > 1000


def test_the_pods_table_shows_running_pods_and_stopped_ones_on_request(client: Client, shop) -> None:
    assert set(rows(client.get("/pods/"))) == {"web-1", "web-2", "db-0"}
    assert "old-job" in rows(client.get("/pods/?seen=all"))


def test_the_pods_table_filters_by_namespace_node_and_text(client: Client, shop) -> None:
    assert set(rows(client.get("/pods/?namespace=shop"))) == {"web-1", "web-2"}
    assert set(rows(client.get("/pods/?node=worker-1&q=db"))) == {"db-0"}
    assert rows(client.get("/pods/?node=elsewhere")) == []
    assert "No pods match" in client.get("/pods/?q=zzz").content.decode()


def test_the_pods_table_sorts_by_newest_cpu_both_ways(client: Client, shop) -> None:
    assert rows(client.get("/pods/?sort=-cpu")) == ["db-0", "web-1", "web-2"]
    assert rows(client.get("/pods/?sort=cpu")) == ["web-2", "web-1", "db-0"]
    assert rows(client.get("/pods/?sort=-name")) == ["web-2", "web-1", "db-0"]
    # An unknown sort falls back to the name rather than failing.
    assert rows(client.get("/pods/?sort=bogus")) == ["db-0", "web-1", "web-2"]


def test_a_namespace_page_lists_only_its_pods_and_cannot_be_filtered_away(client: Client, shop) -> None:
    assert set(rows(client.get("/namespaces/shop/?namespace=data"))) == {"web-1", "web-2"}
    assert set(rows(client.get("/namespaces/shop/deployments/web/"))) == {"web-1", "web-2"}


def test_the_pods_table_pages_thousands_of_pods_on_the_server(client: Client, django_assert_max_num_queries) -> None:
    node = make_node("worker-1")
    now = timezone.now()
    Pod.objects.bulk_create([
        Pod(uid=str(uuid.uuid4()), name=f"pod-{i:05d}", namespace=f"ns-{i % 7}", node=node,
            first_seen=now, last_seen=now)
        for i in range(3000)
    ])
    with django_assert_max_num_queries(12):
        response = client.get("/pods/?page=3")
    body = response.content.decode()
    assert "Pods 101–150 of 3000" in body
    assert rows(response)[0] == "pod-00100" and len(rows(response)) == 50
    assert 'href="?page=4"' in body and 'href="?page=2"' in body
    # Past the end: the last page, not an error.
    assert rows(client.get("/pods/?page=999"))[-1] == "pod-02999"
    assert len(rows(client.get("/pods/?per_page=200"))) == 200
    assert len(rows(client.get("/pods/?per_page=100000"))) == 50


def test_views_of_apis_not_installed_are_not_offered(client: Client, shop, settings) -> None:
    settings.ROOT_URLCONF = "metrics.tests.urls_without_alerts"
    body = client.get("/").content.decode()
    assert "/views/alerts/" not in body
    assert 'id="alerts"' not in body
    assert client.get("/views/alerts/").status_code == 404


def test_a_view_appears_once_its_api_is_routed(client: Client, shop) -> None:
    # The installation routes /api/alerts/ and /api/model-servers/: both views are offered.
    body = client.get("/").content.decode()
    assert 'href="/views/alerts/"' in body
    # The overview lists the active ones.
    assert 'data-alerts-api="/api/alerts/"' in body and 'id="alerts"' in body
    assert "/views/model-servers/" in body
    page = client.get("/views/alerts/")
    assert page.status_code == 200
    assert 'data-api="/api/alerts/"' in page.content.decode()


def test_a_deployment_shows_its_right_sizing_once_that_api_is_routed(client: Client, shop, settings) -> None:
    body = client.get("/namespaces/shop/deployments/web/").content.decode()
    assert 'data-rightsizing-api="/api/namespaces/shop/deployments/web/rightsizing/"' in body
    assert 'id="rightsizing"' in body
    # Without that route (an installation without right-sizing), the section is not offered.
    settings.ROOT_URLCONF = "metrics.tests.urls_without_alerts"
    body = client.get("/namespaces/shop/deployments/web/").content.decode()
    assert 'id="rightsizing"' not in body


def test_each_optional_view_has_its_own_page(client: Client, shop) -> None:
    for slug, api in (("model-servers", "/api/model-servers/"), ("alerts", "/api/alerts/"), ("rightsizing", "/api/rightsizing/")):
        body = client.get(f"/views/{slug}/").content.decode()
        assert f'data-page="{slug}"' in body and f'data-api="{api}"' in body
    history = client.get("/views/alerts/?state=resolved").content.decode()
    assert 'data-history="1"' in history and '<a href="?state=resolved" aria-current="page">History</a>' in history
    assert client.get("/views/nothing/").status_code == 404


def test_a_model_server_page_reads_its_api_as_a_deployment_or_a_bare_pod(client: Client, shop, settings) -> None:
    body = client.get("/views/model-servers/llm/decode/").content.decode()
    assert 'data-page="model-server"' in body and 'data-api="/api/model-servers/llm/decode/"' in body
    body = client.get("/views/model-servers/llm/decode-0/?kind=pod").content.decode()
    assert 'data-api="/api/model-servers/llm/decode-0/?kind=pod"' in body
    assert f'data-raw-retention-seconds="{settings.RETENTION_RAW_DAYS * 86400}"' in body
    # The overview links its cards to the views that are installed.
    overview = client.get("/").content.decode()
    assert 'data-alerts-page="/views/alerts/"' in overview and 'data-model-servers-page="/views/model-servers/"' in overview
