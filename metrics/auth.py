"""DRF authentication and permissions for machine tokens and readers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from metrics.models import ApiToken
from metrics.tokens import lookup_token


class TokenUser:
    """The request.user of a token-authenticated request: not a Django user, never staff."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.username = f"token:{token.name}"
        self.pk = None

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TokenUser, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("Authorization header has no token.")
        token = lookup_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return TokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 when credentials are missing.
        return self.keyword


def _token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


class HasIngestScope(permissions.BasePermission):
    message = "This endpoint needs a collector token with the ingest scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = _token(request)
        return token is not None and token.scope == ApiToken.Scope.INGEST


class CanRead(permissions.BasePermission):
    """A logged-in user, a read-scope token, or anyone when ALLOW_ANONYMOUS_READS is set."""

    message = "Reading needs a session or a token with the read scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        if settings.ALLOW_ANONYMOUS_READS:
            return True
        token = _token(request)
        if token is not None:
            return token.scope == ApiToken.Scope.READ
        user = request.user
        return bool(user and user.is_authenticated and user.is_active)
