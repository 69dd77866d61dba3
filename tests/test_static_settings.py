"""Static files: hashed names only once collectstatic has written its manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _storage_backend(static_root: Path) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": "static-settings-test",
        "STATIC_ROOT": str(static_root),
        "DJANGO_SETTINGS_MODULE": "monitor_site.settings",
    }
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.STORAGES['staticfiles']['BACKEND'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_it_serves_plain_names_when_collectstatic_has_not_run(tmp_path: Path) -> None:
    assert _storage_backend(tmp_path) == "django.contrib.staticfiles.storage.StaticFilesStorage"


def test_it_serves_hashed_names_once_the_manifest_exists(tmp_path: Path) -> None:
    (tmp_path / "staticfiles.json").write_text(json.dumps({"paths": {}, "version": "1.1"}))
    assert _storage_backend(tmp_path) == "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_the_admin_login_page_renders_without_collectstatic(client) -> None:
    # The admin's CSS goes through the configured storage; a manifest storage without its
    # manifest would raise and answer 500.
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"/static/admin/css/" in response.content
