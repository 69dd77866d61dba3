"""Admin login throttling (django-axes) and the TLS deployment settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.contrib.auth.models import User
from django.test import Client

REPO = Path(__file__).resolve().parents[2]


def login(client: Client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "admin", "password": password})


def test_thirty_wrong_passwords_lock_the_admin_out_even_for_the_right_one(db):
    User.objects.create_superuser("admin", "a@example.com", "right-password-123")
    client = Client()
    answers = [login(client, f"wrong-{n}").status_code for n in range(30)]
    assert answers[0] == 200  # the form again, with an error
    assert 429 in answers or 403 in answers
    response = login(client, "right-password-123")
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_a_few_wrong_passwords_do_not_lock_the_admin_out(db):
    User.objects.create_superuser("admin", "a@example.com", "right-password-123")
    client = Client()
    for n in range(3):
        login(client, f"wrong-{n}")
    assert login(client, "right-password-123").status_code == 302


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DEBUG": "0", "SECRET_KEY": "k" * 64 + "-not-a-real-secret-" + "z" * 20, **env},
    )


def test_check_deploy_passes_with_no_warning_when_tls_is_configured():
    result = check_deploy(SECURE_TLS="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_tls_so_the_test_above_can_fail():
    result = check_deploy(SECURE_TLS="false")
    assert result.returncode != 0
    assert "W008" in result.stderr + result.stdout


def test_pages_carry_a_csp_that_allows_no_inline_script_and_swagger_ui_needs_none(admin_client):
    import re

    for path in ("/", "/api/docs/", "/admin/"):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        # Every script is a file from this origin, so the policy does not break the page.
        assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", response.content), path
