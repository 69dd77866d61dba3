"""A poster shared by the ingest tests (their fixtures are in conftest.py)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from django.test import Client



def post(
    client: Client,
    token: str | None,
    batch: Any,
    *,
    gzipped: bool = False,
    content_type: str = "application/json",
    **headers: str,
):
    body = batch if isinstance(batch, bytes) else json.dumps(batch).encode()
    if gzipped:
        body = gzip.compress(body)
        headers.setdefault("HTTP_CONTENT_ENCODING", "gzip")
    if token is not None:
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
    return client.generic("POST", "/api/ingest/", body, content_type=content_type, **headers)
