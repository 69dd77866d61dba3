"""Delivery: gzip POST with a bearer token, retries with backoff, the bounded spool and its replay."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector.agent import HttpSink, encode
from collector.config import Config
from collector.sender import BACKOFF_CAP, Sender, Token, backoff
from collector.spool import Spool


class IngestServer:
    """A stand-in for POST /api/ingest/ answering with the statuses a test queues up."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.default = (201, {"stored": True, "pods": 0, "containers": 0})
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                srv.received.append((dict(self.headers), json.loads(body)))
                status, answer = srv.answers.pop(0) if srv.answers else srv.default
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/ingest/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Any:
    s = IngestServer()
    yield s
    s.close()


def batch(n: int) -> dict[str, Any]:
    return {"node": "worker-1", "time": f"2026-11-22T22:40:{n:02d}Z", "interval_seconds": 10.0,
            "node_usage": {}, "pods": []}


def body(n: int) -> bytes:
    return gzip.compress(encode(batch(n)))


def test_a_batch_is_posted_gzipped_with_the_bearer_token(server: Any) -> None:
    sender = Sender(server.url, Token("km_abc_secret"))
    assert sender.send(body(10), time.monotonic() + 5) == "stored"
    headers, received = server.received[0]
    assert headers["Authorization"] == "Bearer km_abc_secret"
    assert headers["Content-Encoding"] == "gzip" and headers["Content-Type"] == "application/json"
    assert received == batch(10)


def test_the_token_file_is_read_again_when_it_changes(server: Any, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("km_one_secret\n")
    sender = Sender(server.url, Token("ignored", str(path)))
    sender.send(body(10), time.monotonic() + 5)
    path.write_text("km_two_longer_secret\n")  # a rotated Secret
    sender.send(body(20), time.monotonic() + 5)
    assert [h["Authorization"] for h, _ in server.received] == [
        "Bearer km_one_secret", "Bearer km_two_longer_secret"]


def test_a_server_error_is_retried_with_backoff_until_stored(server: Any) -> None:
    server.answers = [(503, {}), (500, {})]
    pauses: list[float] = []
    sender = Sender(server.url, Token("t"), sleep=pauses.append)
    assert sender.send(body(10), time.monotonic() + 60) == "stored"
    assert len(server.received) == 3 and len(pauses) == 2


def test_retries_stop_at_the_deadline(server: Any) -> None:
    server.default = (503, {})
    sender = Sender(server.url, Token("t"), sleep=lambda s: None)
    assert sender.send(body(10), time.monotonic() + 1) == "retry"


def test_a_refused_batch_is_logged_and_dropped_not_retried(server: Any, caplog: Any) -> None:
    server.answers = [(400, {"errors": {"pods[0].foo": ["Unknown field."]}})]
    sender = Sender(server.url, Token("t"), sleep=lambda s: pytest.fail("must not retry"))
    with caplog.at_level(logging.ERROR, logger="collector.sender"):
        assert sender.send(body(10), time.monotonic() + 60) == "rejected"
    assert len(server.received) == 1
    assert "pods[0].foo" in caplog.text and "400" in caplog.text


@pytest.mark.parametrize("status", [401, 403, 408, 429])
def test_auth_and_throttling_answers_keep_the_batch(server: Any, status: int) -> None:
    server.default = (status, {})
    sender = Sender(server.url, Token("t"), sleep=lambda s: None)
    assert sender.send(body(10), time.monotonic() + 0.5) == "retry"


def test_an_unreachable_api_is_a_retry_and_one_log_line(caplog: Any) -> None:
    sender = Sender("http://127.0.0.1:9/api/ingest/", Token("t"), sleep=lambda s: None)
    with caplog.at_level(logging.WARNING, logger="collector.sender"):
        for _ in range(3):
            assert sender.post_once(body(10)) == "retry"
    assert len(caplog.records) == 1 and "Traceback" not in caplog.text


def test_backoff_is_full_jitter_growing_to_a_cap() -> None:
    assert backoff(0, rng=lambda lo, hi: hi) == 0.5
    assert backoff(3, rng=lambda lo, hi: hi) == 4.0
    assert backoff(30, rng=lambda lo, hi: hi) == BACKOFF_CAP
    assert backoff(5, rng=lambda lo, hi: lo) == 0.0
    assert all(0 <= backoff(4) <= 8 for _ in range(100))


def test_the_spool_drops_the_oldest_beyond_its_size_and_counts_them(tmp_path: Path) -> None:
    size = len(body(1))
    spool = Spool(str(tmp_path), max_bytes=3 * size)
    for n in range(5):
        spool.add(body(n))
    assert len(spool) == 3 and spool.dropped == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [json.loads(gzip.decompress((tmp_path / n).read_bytes()))["time"][-3:-1] for n in names] == [
        "02", "03", "04"]


def test_the_spool_is_found_again_after_a_restart(tmp_path: Path) -> None:
    first = Spool(str(tmp_path), max_bytes=1 << 20)
    first.add(body(1))
    first.add(body(2))
    again = Spool(str(tmp_path), max_bytes=1 << 20)
    assert len(again) == 2
    name, data = again.oldest()
    assert json.loads(gzip.decompress(data))["time"].endswith(":01Z")


def sink_for(server: Any, tmp_path: Path, max_bytes: int = 1 << 20) -> HttpSink:
    config = Config(api_url=server.url.removesuffix("/api/ingest/"), token="t",
                    spool_dir=str(tmp_path / "spool"), spool_max_bytes=max_bytes)
    return HttpSink(config, sender=Sender(config.ingest_url, Token("t"), sleep=lambda s: None))


def test_batches_wait_in_the_spool_while_the_api_is_down_and_replay_oldest_first(
        server: Any, tmp_path: Path) -> None:
    sink = sink_for(server, tmp_path)
    server.default = (503, {})
    for n in (10, 20, 30):
        sink.deliver(batch(n), time.monotonic() + 0.2)
    assert len(sink.spool) == 3
    server.default = (201, {"stored": True, "pods": 0, "containers": 0})
    server.received.clear()
    sink.deliver(batch(40), time.monotonic() + 5)
    assert [b["time"][-3:-1] for _, b in server.received] == ["10", "20", "30", "40"]
    assert len(sink.spool) == 0


def test_a_duplicate_answer_on_replay_counts_as_delivered(server: Any, tmp_path: Path) -> None:
    sink = sink_for(server, tmp_path)
    sink.spool.add(body(10))
    server.default = (200, {"stored": False, "duplicate": True})
    sink.replay(time.monotonic() + 5)
    assert len(sink.spool) == 0


def test_dropped_batches_are_reported_in_the_next_batch_warnings(server: Any, tmp_path: Path) -> None:
    sink = sink_for(server, tmp_path, max_bytes=len(body(1)) + 10)
    server.default = (503, {})
    for n in (10, 20, 30):
        sink.deliver(batch(n), time.monotonic() + 0.1)
    warnings = sink.warnings()
    assert warnings == ["spool: 2 batches dropped since start (spool size limit reached)"]
    assert sink.warnings() == []  # said once, until more are dropped


def test_a_shutdown_during_retries_spools_the_batch(server: Any, tmp_path: Path) -> None:
    sink = sink_for(server, tmp_path)
    server.default = (503, {})
    stop = threading.Event()
    sink.sender.sleep = lambda s: stop.set()  # SIGTERM arrives during the first pause
    sink.sender.stopping = stop.is_set
    started = time.monotonic()
    sink.deliver(batch(10), time.monotonic() + 60)
    assert time.monotonic() - started < 5
    assert len(server.received) == 1 and len(sink.spool) == 1
