"""Run the real collector over fixture trees: a fake node root whose files change between cycles."""

from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from collector.delta import build_batch
from collector.paths import Roots
from collector.snapshot import Collector, Snapshot
from collector.sources import filesystem

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = Path(__file__).resolve().parent / "golden"
# os.statvfs("/") recorded on the machine the fixtures were captured on: statvfs has no file to
# capture, and the golden batches must not depend on the disk of whoever runs the tests.
RECORDED_STATVFS = os.statvfs_result((4096, 4096, 66053021, 59897617, 20442324, 16777216,
                                      16314126, 16314126, 4096, 255))


def roots_for(tree: Path) -> Roots:
    return Roots(str(tree / "proc"), str(tree / "sys"), str(tree / "var/log/pods"))


def install(src: Path, node: Path) -> None:
    """Make `node` look like `src` (the next instant of the same host)."""
    if node.exists():
        shutil.rmtree(node)
    shutil.copytree(src, node, symlinks=True)


class FixtureNode:
    """A node root under tmp whose contents are swapped from one captured instant to the next."""

    def __init__(self, root: Path, monkeypatch: Any) -> None:
        self.root = root
        self.roots = roots_for(root)
        monkeypatch.setattr(filesystem.os, "statvfs", lambda _path: RECORDED_STATVFS)
        self.collector = Collector(self.roots, gpu=False)

    def take(self, src: Path, tick: float) -> Snapshot:
        install(src, self.root)
        snap = self.collector.take(tick)
        snap.monotonic = tick  # the interval between fixture instants is the nominal one
        return snap


def normalise(batch: dict[str, Any]) -> dict[str, Any]:
    """Zero what depends on the speed of the machine running the test (timings)."""
    batch = json.loads(json.dumps(batch))
    info = batch.get("collector") or {}
    if "cycle_cpu_seconds" in info:
        info["cycle_cpu_seconds"] = 0.0
    for status in (info.get("sources") or {}).values():
        status["seconds"] = 0.0
    return batch


class RecordedApi:
    """A local HTTP server answering with recorded Kubernetes API responses.

    `routes` maps a path (query string excluded) to (status, body bytes); every request is kept
    in `requests` (path with query, headers) so tests can check what the collector asked for.
    """

    def __init__(self, routes: dict[str, tuple[int, bytes]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                api.requests.append((self.path, dict(self.headers)))
                status, body = api.routes.get(self.path.split("?")[0], (404, b'{"kind":"Status","code":404}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def batch_between(node: FixtureNode, t0: Path, t1: Path, meta: Callable[[str], Any],
                  refresh: Callable[[set[str]], Any] | None = None) -> dict[str, Any]:
    first = node.take(t0, 1_795_000_000.0)
    second = node.take(t1, 1_795_000_010.0)
    if refresh is not None:
        second.sources.update(refresh(set(second.pods)))
    return build_batch(first, second, "worker-1", meta, 10.0)
