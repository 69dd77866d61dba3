"""Model-server stand-ins: real HTTP servers on loopback answering /metrics with recorded text.

Each serves the fixture states of one flavour (collector/tests/fixtures/serving/<flavour>/N.txt)
in order, one state per answered scrape, and stays on the last one. `slow_next` makes the next
answer wait longer than the collector's scrape timeout; such a scrape does not move the state on,
as a server too busy to answer has not been seen by anyone.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "serving"
FLAVOURS = ("vllm", "vllm-old", "sglang")


def states(flavour: str) -> list[str]:
    return [(FIXTURES / flavour / f"{i}.txt").read_text() for i in range(5)]


class StandIn:
    def __init__(self, texts: list[str], host: str = "127.0.0.1", loop: bool = False) -> None:
        self.texts = texts
        self.loop = loop  # start over after the last state (a benchmark's endless traffic)
        self.index = 0
        self.served: list[int] = []  # state index of every answer given in time
        self.slow_next = 0.0
        self.slow_requests: set[int] = set()  # request numbers (1-based) answered too late
        self.requests = 0
        self.status = 200
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                with stand_in._lock:
                    stand_in.requests += 1
                    delay, stand_in.slow_next = stand_in.slow_next, 0.0
                    if stand_in.requests in stand_in.slow_requests:
                        delay = 3.0
                if delay:
                    time.sleep(delay)
                    return  # the client gave up; the state is not consumed
                with stand_in._lock:
                    if stand_in.status != 200:
                        self.send_error(stand_in.status)
                        return
                    last = len(stand_in.texts) - 1
                    index = stand_in.index % len(stand_in.texts) if stand_in.loop else min(stand_in.index, last)
                    stand_in.index += 1
                    stand_in.served.append(index)
                body = stand_in.texts[index].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
