"""`manage.py bootstrap`: the first-start admin login and collector token, idempotent."""

from __future__ import annotations

import stat
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from metrics.models import ApiToken
from metrics.tokens import create_token, lookup_token

pytestmark = pytest.mark.django_db


def bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KUBEMONITOR_ADMIN_USER",
        "KUBEMONITOR_ADMIN_PASSWORD",
        "KUBEMONITOR_ADMIN_PASSWORD_FILE",
        "KUBEMONITOR_COLLECTOR_TOKEN",
        "KUBEMONITOR_COLLECTOR_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_it_writes_a_generated_admin_password_to_a_private_file_and_never_prints_it(tmp_path: Path) -> None:
    creds = tmp_path / "admin"
    first = bootstrap("--credentials-file", str(creds))
    fields = dict(line.split("=", 1) for line in creds.read_text().splitlines())
    password = fields["password"]
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert password not in first
    assert str(creds) in first

    second = bootstrap()
    assert password not in second
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_without_a_credentials_file_it_creates_no_admin_with_a_generated_password() -> None:
    out = bootstrap()
    assert "none created" in out and "--credentials-file" in out
    assert not get_user_model().objects.filter(is_superuser=True).exists()


def test_it_takes_the_admin_login_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEMONITOR_ADMIN_USER", "ops")
    monkeypatch.setenv("KUBEMONITOR_ADMIN_PASSWORD", "correct horse battery staple")
    out = bootstrap()
    assert "correct horse" not in out
    assert get_user_model().objects.get(username="ops").check_password("correct horse battery staple")


def test_it_leaves_an_existing_superuser_alone() -> None:
    get_user_model().objects.create_superuser("root", "", "pw-already-set")
    bootstrap()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["root"]


def test_it_writes_a_working_collector_token_to_the_token_file_and_keeps_it(tmp_path: Path) -> None:
    token_file = tmp_path / "run" / "collector-token"
    bootstrap("--token-file", str(token_file))
    raw = token_file.read_text().strip()
    token = lookup_token(raw)
    assert token is not None and token.scope == ApiToken.Scope.INGEST
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    bootstrap("--token-file", str(token_file))
    assert token_file.read_text().strip() == raw
    assert ApiToken.objects.count() == 1


def test_it_replaces_a_token_file_whose_token_was_revoked(tmp_path: Path) -> None:
    token_file = tmp_path / "collector-token"
    bootstrap("--token-file", str(token_file))
    old = token_file.read_text().strip()
    ApiToken.objects.update(revoked="2026-01-01T00:00:00Z")

    bootstrap("--token-file", str(token_file))
    new = token_file.read_text().strip()
    assert new != old
    assert lookup_token(old) is None
    assert lookup_token(new) is not None


def test_without_a_token_file_it_creates_a_token_only_when_none_is_live() -> None:
    first = bootstrap()
    assert "km_" in first
    assert "km_" not in bootstrap()
    assert ApiToken.objects.filter(scope=ApiToken.Scope.INGEST).count() == 1


def test_it_registers_the_collector_token_given_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = "km_0123456789ab_" + "s" * 43
    monkeypatch.setenv("KUBEMONITOR_COLLECTOR_TOKEN", raw)
    bootstrap()
    bootstrap()
    token = lookup_token(raw)
    assert token is not None and token.scope == ApiToken.Scope.INGEST
    assert ApiToken.objects.count() == 1


def test_it_refuses_a_malformed_collector_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEMONITOR_COLLECTOR_TOKEN", "not-a-token")
    with pytest.raises(CommandError, match="km_<prefix>_<secret>"):
        bootstrap()
    assert not get_user_model().objects.exists()


def test_it_refuses_a_token_whose_prefix_is_taken_by_another_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    _, raw = create_token("existing")
    prefix = raw.split("_")[1]
    monkeypatch.setenv("KUBEMONITOR_COLLECTOR_TOKEN", f"km_{prefix}_another-secret")
    with pytest.raises(CommandError, match="another secret"):
        bootstrap()


def test_a_read_token_file_gets_a_read_scope_token(tmp_path: Path) -> None:
    read_file = tmp_path / "read-token"
    bootstrap("--read-token-file", str(read_file))
    token = lookup_token(read_file.read_text().strip())
    assert token is not None and token.scope == ApiToken.Scope.READ
