"""The dashboard page at / and its static files."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    # Deployments serve the hashed names collectstatic wrote; tests have no collectstatic run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def test_it_sends_anonymous_visitors_to_the_login(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/")


def test_it_serves_the_page_to_a_logged_in_user(db):
    client = Client()
    client.force_login(User.objects.create_user("carol", password="x"))
    response = client.get("/")
    assert response.status_code == 200
    assert b'src="/static/metrics/dashboard.js"' in response.content
    assert b'href="/api/"' in response.content


def test_it_serves_anonymous_visitors_when_reads_are_open(db, settings):
    settings.ALLOW_ANONYMOUS_READS = True
    assert Client().get("/").status_code == 200


def test_whitenoise_serves_the_script(db):
    response = Client().get("/static/metrics/dashboard.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"/api/namespaces/" in body
