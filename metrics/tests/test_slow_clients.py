"""Slow or stalled clients never hold a worker: a real gunicorn started as the image starts it
(./gunicorn.conf.py: monitor_site/gunicorn_worker.py), with stalled uploads open, still answers a
valid batch at once (issue 8, item 4)."""

from __future__ import annotations

import json
import socket
import time
from typing import Iterator

import pytest
import requests

from metrics.models import ApiToken, NodeSample
from metrics.tests.factories import batch, tick
from metrics.tests.gunicorn_server import Gunicorn, database_url_of_test_db
from metrics.tokens import create_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 2
PROMPT_SECONDS = 3.0


@pytest.fixture
def server(tmp_path) -> Iterator[Gunicorn]:
    # As the image runs it: its worker count and timeout on the command line, the rest from
    # gunicorn.conf.py. A short read timeout so the test also sees stalled clients dropped.
    with Gunicorn(tmp_path / "gunicorn.log", database_url_of_test_db(),
                  args=["--workers", str(WORKERS), "--timeout", "30", "--keep-alive", "5"],
                  env={"GUNICORN_REQUEST_READ_TIMEOUT": "6"}) as running:
        yield running


def stalled_upload(server: Gunicorn, declared: int = 100_000) -> socket.socket:
    """A connection that declares `declared` bytes of body and sends half of it."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /api/ingest/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer km_abcdefgh_" + b"x" * 40 + b"\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode() + b" " * (declared // 2)
    )
    return sock


def post(server: Gunicorn, token: str, body: bytes, timeout: float) -> requests.Response:
    return requests.post(f"{server.url}/api/ingest/", data=body, timeout=timeout,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_a_valid_batch_is_answered_promptly_while_slow_uploads_stall(server):
    token = create_token("prompt", ApiToken.Scope.INGEST)[1]
    # Warm both workers up (Django loads on the first request) so the timing is the server's.
    for _ in range(2 * WORKERS):
        requests.get(f"{server.url}/healthz", timeout=30)
    stalled = [stalled_upload(server) for _ in range(3 * WORKERS)]
    try:
        time.sleep(0.5)  # every stalled upload is in the server's hands
        body = json.dumps(batch("prompt-1", tick(), pods=3)).encode()

        started = time.monotonic()
        response = post(server, token, body, timeout=PROMPT_SECONDS * 4)
        took = time.monotonic() - started

        assert response.status_code == 201, response.text
        assert took < PROMPT_SECONDS, f"answered after {took:.1f} s"
        assert NodeSample.objects.filter(node__name="prompt-1").count() == 1
        # A trickle of bytes does not keep a stalled upload alive past the read timeout.
        for sock in stalled:
            sock.sendall(b" ")
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_upload_is_dropped_after_the_read_timeout(server):
    sock = stalled_upload(server)
    try:
        sock.settimeout(20)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # trickle, to show it is a deadline, not idleness
            sock.sendall(b" ")
            time.sleep(1)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, without an answer
        assert time.monotonic() - started < 10
    finally:
        sock.close()
