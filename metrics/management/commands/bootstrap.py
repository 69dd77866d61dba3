"""First start, idempotent: an admin login and a collector token, each only if none exists.

    python manage.py bootstrap [--token-file PATH] [--credentials-file PATH] [--read-token-file PATH]

* Admin: when no active superuser exists, creates one named $KUBEMONITOR_ADMIN_USER (default
  "admin") with $KUBEMONITOR_ADMIN_PASSWORD (or the file named by $KUBEMONITOR_ADMIN_PASSWORD_FILE);
  without a password a random one is generated and written to --credentials-file (mode 0600),
  never to standard output or a log; without that file no admin is created (the command says so).
* Collector token (ingest scope):
  - $KUBEMONITOR_COLLECTOR_TOKEN (or _FILE) set: that exact token is registered if it is not yet
    (Kubernetes: the same Secret feeds this command and the DaemonSet, so nothing is copied by hand).
  - --token-file given: kept when it holds a live ingest token; otherwise a new token is created and
    written there (mode 0600). The file is the only copy of the plaintext, so a lost file means a
    new token, never an unusable collector.
  - neither: a token is created and printed only when no live ingest token exists at all.
* --read-token-file: the same for a read-scope token (scripts and the local run's checks).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from metrics.models import ApiToken
from metrics.tokens import _digest, create_token, split_token


def _env_secret(name: str) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise CommandError(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return os.environ.get(name) or None


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(tmp, 0o600)  # the umask may have masked bits off, never added any
    os.replace(tmp, path)


def _live_token(raw: str, scope: str) -> ApiToken | None:
    parts = split_token(raw)
    if parts is None:
        return None
    prefix, secret = parts
    token = ApiToken.objects.filter(prefix=prefix, scope=scope, revoked__isnull=True).first()
    if token is None or not secrets.compare_digest(token.digest, _digest(secret)):
        return None
    return token


def _free_name(base: str) -> str:
    name, n = base, 1
    while ApiToken.objects.filter(name=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


class Command(BaseCommand):
    help = "Create an admin login and a collector token if none exist (safe to run on every start)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--token-file", type=Path, help="Keep the collector (ingest) token in this file (mode 0600)."
        )
        parser.add_argument(
            "--read-token-file", type=Path, help="Keep a read-scope token in this file (mode 0600)."
        )
        parser.add_argument(
            "--credentials-file",
            type=Path,
            help="Write a generated admin password here (mode 0600); it is never printed.",
        )
        parser.add_argument("--token-name", default="collector", help="Name of a new collector token.")
        parser.add_argument("--no-admin", action="store_true", help="Do not create an admin login.")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            if not options["no_admin"]:
                self._admin(options["credentials_file"])
            self._collector_token(options["token_file"], options["token_name"])
            if options["read_token_file"]:
                self._token_in_file(options["read_token_file"], ApiToken.Scope.READ, "reader")

    # -- admin ------------------------------------------------------------------------------------

    def _admin(self, credentials_file: Path | None) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True, is_active=True).exists():
            self.stdout.write("admin: a superuser exists; left as it is")
            return
        username = os.environ.get("KUBEMONITOR_ADMIN_USER") or "admin"
        password = _env_secret("KUBEMONITOR_ADMIN_PASSWORD")
        generated = password is None
        if generated:
            if credentials_file is None:
                # Standard output ends up in logs (docker compose logs, kubectl logs): a password
                # printed there outlives its need, so a generated one goes to a private file only.
                self.stdout.write(
                    "admin: none created; set KUBEMONITOR_ADMIN_PASSWORD (or _FILE) or pass "
                    "--credentials-file to have a generated password written there"
                )
                return
            password = secrets.token_urlsafe(15)
        if User.objects.filter(username=username).exists():
            raise CommandError(
                f"user {username!r} exists but is not an active superuser; "
                "set KUBEMONITOR_ADMIN_USER to another name or promote it with createsuperuser"
            )
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            assert credentials_file is not None
            _write_private(credentials_file, f"username={username}\npassword={password}")
            self.stdout.write(f"admin: created user {username!r}; its password is in {credentials_file} (mode 0600)")
        else:
            self.stdout.write(f"admin: created user {username!r} with the configured password")

    # -- tokens -----------------------------------------------------------------------------------

    def _collector_token(self, token_file: Path | None, name: str) -> None:
        given = _env_secret("KUBEMONITOR_COLLECTOR_TOKEN")
        if given:
            self._register(given, name)
            if token_file:
                _write_private(token_file, given)
            return
        if token_file:
            self._token_in_file(token_file, ApiToken.Scope.INGEST, name)
            return
        if ApiToken.objects.filter(scope=ApiToken.Scope.INGEST, revoked__isnull=True).exists():
            self.stdout.write("collector token: a live ingest token exists; left as it is")
            return
        token, plaintext = create_token(_free_name(name), ApiToken.Scope.INGEST)
        self.stdout.write(f"collector token: created {token.name!r}: {plaintext}")

    def _register(self, raw: str, name: str) -> None:
        parts = split_token(raw)
        if parts is None:
            raise CommandError("KUBEMONITOR_COLLECTOR_TOKEN is not a kubemonitor token (km_<prefix>_<secret>)")
        prefix, secret = parts
        existing = ApiToken.objects.filter(prefix=prefix).first()
        if existing is not None:
            if not secrets.compare_digest(existing.digest, _digest(secret)):
                raise CommandError(
                    f"KUBEMONITOR_COLLECTOR_TOKEN's prefix {prefix!r} belongs to token {existing.name!r} "
                    "with another secret; generate a new token"
                )
            if existing.revoked is not None:
                raise CommandError(f"KUBEMONITOR_COLLECTOR_TOKEN is token {existing.name!r}, which is revoked")
            self.stdout.write(f"collector token: {existing.name!r} is registered")
            return
        ApiToken.objects.create(
            name=_free_name(name), scope=ApiToken.Scope.INGEST, prefix=prefix, digest=_digest(secret)
        )
        self.stdout.write("collector token: registered the token from KUBEMONITOR_COLLECTOR_TOKEN")

    def _token_in_file(self, path: Path, scope: str, name: str) -> None:
        try:
            raw = path.read_text().strip()
        except FileNotFoundError:
            raw = ""
        except OSError as exc:
            raise CommandError(f"{path} cannot be read: {exc}") from exc
        if raw and _live_token(raw, scope) is not None:
            self.stdout.write(f"{scope} token: {path} holds a live token; left as it is")
            return
        token, plaintext = create_token(_free_name(name), scope)
        _write_private(path, plaintext)
        self.stdout.write(f"{scope} token: created {token.name!r} and wrote it to {path}")
