"""Token authentication for the ingest hot path, with verified tokens remembered briefly.

Every collector posts every 10 s, so looking its token up in the database on each request costs
one lookup and verification per batch (measured at about a tenth of the server's time per batch
in bench/ingest.py --profile). A token verified here is remembered for TOKEN_CACHE_SECONDS per
process; each request still checks by primary key that it was not revoked meanwhile, so a
revocation takes effect at once (as on reads, which use the uncached
metrics.auth.ApiTokenAuthentication). Only a SHA-256 of the Authorization header is kept as the
key.
"""

from __future__ import annotations

import hashlib
import threading
import time

from django.db import connection
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from metrics.auth import ApiTokenAuthentication, TokenUser
from metrics.models import ApiToken

TOKEN_CACHE_SECONDS = 10.0
# Collectors use one token each at most; this only bounds memory against a flood of bad tokens.
MAX_ENTRIES = 10_000

_cache: dict[bytes, tuple[ApiToken, float]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


# Revocation takes effect at once: a remembered token is still checked on every request by one
# primary-key probe, which costs far less than the lookup and verification the cache saves (the
# figures are in docs/api.md, "Tokens").
_VALID_SQL = f"SELECT 1 FROM {ApiToken._meta.db_table} WHERE id = %s AND revoked IS NULL"


def _still_valid(token_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_VALID_SQL, [token_id])
        return cursor.fetchone() is not None


class CachedTokenAuthentication(ApiTokenAuthentication):
    def authenticate(self, request: Request) -> tuple[TokenUser, ApiToken] | None:
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        key = hashlib.sha256(header).digest()
        now = time.monotonic()
        entry = _cache.get(key)
        if entry is not None and entry[1] > now:
            if not _still_valid(entry[0].pk):
                with _lock:
                    _cache.pop(key, None)
                raise exceptions.AuthenticationFailed("Invalid or revoked token.")
            return TokenUser(entry[0]), entry[0]
        result = super().authenticate(request)  # raises AuthenticationFailed for bad tokens
        if result is not None:
            with _lock:
                if len(_cache) >= MAX_ENTRIES:
                    _cache.clear()
                _cache[key] = (result[1], now + TOKEN_CACHE_SECONDS)
        return result
