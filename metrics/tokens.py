"""Machine tokens: `km_<prefix>_<secret>`, stored as a SHA-256 digest of the secret.

The secret is 32 random bytes, so a plain SHA-256 is enough (no slow hash needed: nobody can
brute-force 256 bits); the prefix is a public lookup key so authentication is one indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.utils import timezone

from metrics.models import ApiToken, Cluster

TOKEN_PREFIX = "km"
# last_used is written at most this often, to keep authentication off the write path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    name: str, scope: str = ApiToken.Scope.INGEST, cluster: Cluster | None = None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext, which is never stored. An ingest token
    given a cluster may write only into that cluster."""
    if cluster is not None and scope != ApiToken.Scope.INGEST:
        raise ValueError("Only ingest tokens are bound to a cluster.")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name, scope=scope, prefix=prefix, digest=_digest(secret), cluster=cluster
    )
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def split_token(raw: str) -> tuple[str, str] | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def lookup_token(raw: str) -> ApiToken | None:
    """Return the live token matching `raw`, or None (unknown, wrong secret or revoked)."""
    parts = split_token(raw)
    if parts is None:
        return None
    prefix, secret = parts
    token = ApiToken.objects.filter(prefix=prefix, revoked__isnull=True).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token
