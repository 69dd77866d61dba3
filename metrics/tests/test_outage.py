"""A database outage: every request answers 503 with Retry-After (JSON under /api/), never a 500.

A real gunicorn whose DATABASE_URL names a port nothing listens on: the real connection attempt
fails the way it does while PostgreSQL is stopped or restarting.
"""

from __future__ import annotations


import pytest
import requests

from metrics.tests.gunicorn_server import Gunicorn, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_without_database(tmp_path_factory: pytest.TempPathFactory):
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/kubemonitor"
    with Gunicorn(tmp_path_factory.mktemp("outage") / "gunicorn.log", dead,
                  args=["--workers", "1", "--threads", "2"]) as server:
        yield server


TOKEN = {"Authorization": "Bearer km_abcdefgh_" + "x" * 40}


def test_ingest_answers_503_json_with_retry_after_while_the_database_is_down(server_without_database):
    response = requests.post(f"{server_without_database.url}/api/ingest/", data=b'{"node": "n"}',
                             headers={**TOKEN, "Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Retry-After"]) > 0
    assert "database" in response.json()["errors"]


@pytest.mark.parametrize("path", ["/api/nodes/", "/api/pods/?limit=5", "/api/namespaces/default/pods/"])
def test_reads_answer_503_json_while_the_database_is_down(server_without_database, path):
    response = requests.get(f"{server_without_database.url}{path}", headers=TOKEN, timeout=10)
    assert response.status_code == 503
    assert response.json()["detail"]
    assert response.headers["Retry-After"]


def test_pages_outside_the_api_answer_503_plain_text(server_without_database):
    # A session cookie makes the admin look the session up in the database.
    response = requests.get(f"{server_without_database.url}/admin/", cookies={"sessionid": "x" * 32}, timeout=10)
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Retry-After"]


def test_readyz_still_answers_503(server_without_database):
    response = requests.get(f"{server_without_database.url}/readyz", timeout=10)
    assert response.status_code == 503
    assert response.text.startswith("database unreachable")


def test_healthz_stays_200_so_kubernetes_does_not_restart_the_pod(server_without_database):
    assert requests.get(f"{server_without_database.url}/healthz", timeout=10).status_code == 200
