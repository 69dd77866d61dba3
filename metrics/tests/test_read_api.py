"""The read API: every endpoint, latest usage in lists, series on details, errors, auth."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from metrics import series
from metrics.models import ApiToken
from metrics.tests.read_helpers import make_node, make_pod, node_rows, pod_rows
from metrics.tokens import create_token


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def cluster(db):
    """Pods reporting up to now, so lists show latest usage, plus an hour of history."""
    now = timezone.now()
    start = series._floor(now - timedelta(hours=1), 60)
    a = make_node("node-a.example.com", cpu_cores=8)
    b = make_node("node-b.example.com", cpu_cores=4)
    pods = {
        "web-1": make_pod("web-1", "shop", a, deployment="web", labels={"app": "web", "tier": "front"}, cpu_limit=1.0),
        "web-2": make_pod("web-2", "shop", b, deployment="web", labels={"app": "web", "tier": "back"}),
        "db-0": make_pod("db-0", "shop", a, labels={"app": "db"}),
        "mon-1": make_pod("mon-1", "ops", b, deployment="mon", labels={"app": "mon"}),
        # The same pod name in two namespaces makes /api/pods/db-0/ ambiguous.
        "db-0-ops": make_pod("db-0", "ops", b, labels={"app": "db"}),
    }
    for i, pod in enumerate(pods.values()):
        pod_rows(pod, start, now, 10 if pod.node == a else 30, seed=i)
    node_rows(a, start, now, 10)
    node_rows(b, start, now, 30)
    return {"a": a, "b": b, "pods": pods, "start": start}


def _names(response, key="name"):
    return [item[key] for item in response.json()["results"]]


# --- authentication ----------------------------------------------------------------------------


def test_it_answers_401_to_anonymous_readers(db):
    response = Client().get("/api/nodes/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_refuses_an_ingest_token(db):
    token = create_token("collector", ApiToken.Scope.INGEST)[1]
    response = Client().get("/api/nodes/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403


def test_it_refuses_a_revoked_read_token(db):
    token, plaintext = create_token("old", ApiToken.Scope.READ)
    token.revoked = timezone.now()
    token.save()
    assert Client().get("/api/nodes/", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 401


def test_it_serves_a_logged_in_user(db):
    user = User.objects.create_user("alice", password="x")
    client = Client()
    client.force_login(user)
    assert client.get("/api/nodes/").status_code == 200


def test_it_serves_anonymous_readers_when_allowed(db, settings):
    settings.ALLOW_ANONYMOUS_READS = True
    assert Client().get("/api/namespaces/").status_code == 200


# --- nodes -------------------------------------------------------------------------------------


def test_nodes_list_their_newest_usage(reader, cluster):
    response = reader.get("/api/nodes/")
    assert response.status_code == 200
    body = response.json()
    assert _names(response) == ["node-a.example.com", "node-b.example.com"]
    assert "count" not in body
    usage = body["results"][0]["usage"]
    assert usage["cpu_millicores"] > 0
    assert usage["cpu_capacity_millicores"] == pytest.approx(8000)
    assert usage["interval_seconds"] == 10


def test_a_node_detail_has_a_series_for_a_window(reader, cluster):
    response = reader.get("/api/nodes/node-a.example.com/", {"window": 1800, "step": 60})
    assert response.status_code == 200
    s = response.json()["series"]
    assert (s["step"], s["source"]) == (60, "1m")
    assert len(s["points"]) == 31
    assert s["points"][0]["time"].endswith(":00Z")
    assert s["points"][0]["cpu_percent_of_capacity"] is not None


def test_a_node_detail_without_window_has_no_series(reader, cluster):
    body = reader.get("/api/nodes/node-a.example.com/").json()
    assert body["series"] is None
    assert body["usage"]["cpu_millicores"] > 0


def test_it_lists_the_pods_of_a_node(reader, cluster):
    response = reader.get("/api/nodes/node-b.example.com/pods/")
    assert sorted(_names(response)) == ["db-0", "mon-1", "web-2"]


def test_it_answers_404_for_an_unknown_node(reader, cluster):
    assert reader.get("/api/nodes/nope/").status_code == 404
    assert reader.get("/api/nodes/nope/pods/").status_code == 404


# --- pods --------------------------------------------------------------------------------------


def test_pods_list_their_newest_usage_with_limits(reader, cluster):
    response = reader.get("/api/pods/", {"namespace": "shop"})
    results = {p["name"]: p for p in response.json()["results"]}
    assert set(results) == {"web-1", "web-2", "db-0"}
    web1 = results["web-1"]
    assert web1["node"] == "node-a.example.com"
    assert web1["usage"]["cpu_limit_millicores"] == pytest.approx(1000)
    assert web1["usage"]["cpu_percent_of_limit"] == pytest.approx(web1["usage"]["cpu_millicores"] / 10)
    assert web1["url"].endswith("/api/namespaces/shop/pods/web-1/")
    assert results["web-2"]["usage"]["cpu_percent_of_limit"] is None


@pytest.mark.parametrize(
    "params, names",
    [
        ({"node": "node-a.example.com"}, ["db-0", "web-1"]),
        ({"deployment": "web"}, ["web-1", "web-2"]),
        ({"label": "app=web"}, ["web-1", "web-2"]),
        ({"label": ["app=web", "tier=back"]}, ["web-2"]),
        ({"label": "tier"}, ["web-1", "web-2"]),
        ({"label": "app=db", "namespace": "ops"}, ["db-0"]),
        ({"label": "app=nothing"}, []),
    ],
)
def test_pods_filter_by_node_deployment_and_labels(reader, cluster, params, names):
    response = reader.get("/api/pods/", params)
    assert response.status_code == 200
    assert sorted(_names(response)) == names


def test_it_rejects_an_empty_label_key(reader, cluster):
    response = reader.get("/api/pods/", {"label": "=web"})
    assert response.status_code == 400
    assert "label" in response.json()


def test_it_rejects_a_null_character_in_a_label_selector(reader, cluster):
    response = reader.get("/api/pods/", {"label": "app\x00=web"})
    assert response.status_code == 400
    assert response.json() == {"label": ["Null characters are not allowed."]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/nodes/n%00/",
        "/api/nodes/n%00/pods/",
        "/api/namespaces/shop%00/?window=60",
        "/api/namespaces/shop/pods/a%00/",
        "/api/namespaces/shop/deployments/web%00/pods/",
        "/api/pods/a%00/",
    ],
)
def test_a_name_with_a_null_character_is_not_found(reader, cluster, path):
    assert reader.get(path).status_code == 404


def test_pods_page_with_a_cursor(reader, cluster):
    first = reader.get("/api/pods/", {"limit": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    seen = _names_from(first)
    page = first
    while page["next"]:
        page = reader.get(page["next"]).json()
        seen += _names_from(page)
    assert sorted(seen) == sorted(["web-1", "web-2", "db-0", "db-0", "mon-1"])


def _names_from(body):
    return [(p["namespace"], p["name"])[1] for p in body["results"]]


def test_a_pod_name_in_two_namespaces_needs_the_namespace(reader, cluster):
    response = reader.get("/api/pods/db-0/")
    assert response.status_code == 400
    assert "ops, shop" in response.json()["namespace"][0]
    response = reader.get("/api/pods/db-0/", {"namespace": "ops"})
    assert response.status_code == 200
    assert response.json()["namespace"] == "ops"


def test_a_unique_pod_name_needs_no_namespace(reader, cluster):
    response = reader.get("/api/pods/web-1/", {"window": 600})
    assert response.status_code == 200
    body = response.json()
    assert body["namespace"] == "shop"
    assert body["series"]["source"] == "raw"
    assert body["containers"] == []


def test_a_pod_detail_in_its_namespace_has_a_series(reader, cluster):
    start = series._floor(cluster["start"], 300) + timedelta(seconds=300)
    end = start + timedelta(minutes=30)
    response = reader.get(
        "/api/namespaces/shop/pods/web-1/",
        {"start": start.isoformat(), "end": end.isoformat(), "step": 300},
    )
    assert response.status_code == 200
    points = response.json()["series"]["points"]
    assert len(points) == 6
    # Every 10 s sample of 0.05..0.15 CPU-seconds per second: a time-weighted average in range.
    assert all(49.99 <= p["cpu_millicores"] <= 150.01 for p in points)


def test_it_answers_404_for_unknown_pods(reader, cluster):
    assert reader.get("/api/pods/nope/").status_code == 404
    assert reader.get("/api/namespaces/shop/pods/mon-1/").status_code == 404
    assert reader.get("/api/namespaces/nope/pods/").status_code == 404


# --- namespaces and Deployments ----------------------------------------------------------------


def test_namespaces_come_from_the_pod_inventory_with_their_newest_minute(reader, cluster):
    response = reader.get("/api/namespaces/")
    assert response.status_code == 200
    results = {n["name"]: n for n in response.json()["results"]}
    assert set(results) == {"ops", "shop"}
    assert results["shop"]["pods"] == 3
    assert results["shop"]["deployments"] == 1
    usage = results["shop"]["usage"]
    assert usage["interval_seconds"] == 60
    assert usage["cpu_millicores"] > 0


def test_a_namespace_detail_series_sums_its_pods(reader, cluster):
    start = cluster["start"]
    end = start + timedelta(minutes=10)
    params = {"start": start.isoformat(), "end": end.isoformat(), "step": 60}
    ns = reader.get("/api/namespaces/shop/", params).json()["series"]["points"]
    pods = [
        reader.get(f"/api/namespaces/shop/pods/{name}/", params).json()["series"]["points"]
        for name in ("web-1", "web-2", "db-0")
    ]
    # Every pod reported the whole of every minute, so the namespace is the sum of its pods.
    for i, point in enumerate(ns):
        assert point["cpu_millicores"] == pytest.approx(sum(p[i]["cpu_millicores"] for p in pods))


def test_it_lists_deployments_of_a_namespace_and_of_all(reader, cluster):
    assert _names(reader.get("/api/namespaces/shop/deployments/")) == ["web"]
    everything = reader.get("/api/deployments/").json()["results"]
    assert [(d["namespace"], d["name"]) for d in everything] == [("ops", "mon"), ("shop", "web")]
    assert everything[1]["pods"] == 2
    assert everything[1]["url"].endswith("/api/namespaces/shop/deployments/web/")


def test_a_deployment_detail_and_its_pods(reader, cluster):
    response = reader.get("/api/namespaces/shop/deployments/web/", {"window": 3600})
    assert response.status_code == 200
    body = response.json()
    assert body["series"]["step"] == 15
    assert sorted(_names(reader.get("/api/namespaces/shop/deployments/web/pods/"))) == ["web-1", "web-2"]


def test_it_answers_404_for_unknown_namespaces_and_deployments(reader, cluster):
    assert reader.get("/api/namespaces/nope/").status_code == 404
    assert reader.get("/api/namespaces/nope/deployments/").status_code == 404
    assert reader.get("/api/namespaces/shop/deployments/nope/").status_code == 404
    assert reader.get("/api/namespaces/shop/deployments/nope/pods/").status_code == 404


# --- bad parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, field",
    [
        ({"window": -1}, "window"),
        ({"window": 0}, "window"),
        ({"window": "soon"}, "window"),
        ({"window": 10**9}, "window"),
        ({"window": 3600, "start": "2026-11-22T10:00:00Z"}, "window"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-11-22T10:00:00Z", "end": "2026-11-22T09:00:00Z"}, "start"),
        ({"end": "2026-11-22T09:00:00Z"}, "start"),
        ({"window": 3600, "step": "1.5"}, "step"),
        ({"window": 3600, "step": 0}, "step"),
        ({"window": 86400, "step": 1}, "step"),
        ({"step": 60}, "step"),
    ],
)
def test_it_answers_400_naming_a_bad_parameter(reader, cluster, params, field):
    for url in ("/api/namespaces/shop/", "/api/nodes/node-a.example.com/", "/api/pods/web-1/"):
        response = reader.get(url, params)
        assert response.status_code == 400, (url, response.content)
        assert field in response.json(), response.json()


def test_a_bad_window_is_400_even_for_an_unknown_name(reader, cluster):
    assert reader.get("/api/namespaces/nope/", {"window": -1}).status_code == 400


# --- queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/api/nodes/", "/api/pods/", "/api/namespaces/", "/api/deployments/",
            "/api/namespaces/shop/pods/", "/api/nodes/node-a.example.com/pods/"],
)
def test_lists_never_count_samples_and_query_a_fixed_number_of_times(reader, cluster, url):
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(url).status_code == 200
    sqls = [
        q["sql"].lower() for q in queries.captured_queries
        if not q["sql"].lower().startswith(("savepoint", "release savepoint", "set local"))
    ]
    assert not [s for s in sqls if "count(" in s and ("sample" in s or "rollup" in s)]
    # Token lookup, the page, one latest-usage query (plus a parent check for nested lists);
    # namespaces and Deployments add their nodes and those nodes' coverage, one query each.
    assert len(sqls) <= 7, sqls


def test_the_openapi_schema_and_docs_are_served(db, settings):
    # Deployments serve the hashed names collectstatic wrote; tests have no collectstatic run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    schema = Client().get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/nodes/{node}/", "/api/namespaces/{namespace}/deployments/{deployment}/pods/",
                 "/api/pods/{pod}/"):
        assert path in text
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    # Offline: the UI comes from the sidecar package, not a CDN.
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs.content


@pytest.mark.parametrize(
    "url", ["/api/", "/api/nodes/", "/api/pods/?label=app=web", "/api/namespaces/shop/?window=600",
            "/api/namespaces/shop/deployments/web/pods/"],
)
def test_the_browsable_api_renders_for_a_logged_in_user(cluster, settings, url):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    client = Client()
    client.force_login(User.objects.create_user("bob", password="x"))
    response = client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_the_openapi_schema_generates_without_warnings_and_validates(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    # --validate checks the document against the OpenAPI meta-schema of its declared version
    # (pydantic's nullable fields are only valid in 3.1).
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))
    assert "/api/namespaces/{namespace}/pods/{pod}/" in out.read_text()


def test_an_api_path_no_route_matches_answers_json_404(db, client):
    response = client.get("/api/alerts/0.5/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_page_no_route_matches_stays_django_html_404(db, client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
