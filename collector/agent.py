"""The collector's loop: tick on multiples of the interval, snapshot, delta, send or spool, replay.

Ticks fall on multiples of the interval on the wall clock (…:10, …:20 with 10 s), so each sample's
interval lies wholly inside one 1-minute bucket on the server. The first tick only primes the
counters. Sending, retrying and replaying share the time until the next tick; whatever is not
delivered by then waits in the spool, oldest first.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import signal
import sys
import threading
import time
from typing import Any

from collector.config import Config
from collector.delta import build_batch
from collector.paths import Roots
from collector.snapshot import Collector
from collector.sources.modelserver import ModelServers
from collector.sources.podmeta import Metadata

log = logging.getLogger("collector.agent")

# Leave this much of each interval for the next snapshot.
SEND_MARGIN = 0.5
# The longest interval the ingest contract accepts.
MAX_INTERVAL = 3600.0


def next_tick(now: float, interval: float) -> float:
    """The first multiple of `interval` (UNIX seconds) strictly after `now`."""
    return (math.floor(now / interval) + 1) * interval


def encode(batch: dict[str, Any]) -> bytes:
    return json.dumps(batch, separators=(",", ":"), allow_nan=False).encode()


class PrintSink:
    """--dry-run: one JSON line per batch on stdout."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def warnings(self) -> list[str]:
        return []

    def deliver(self, batch: dict[str, Any], deadline: float) -> None:
        self.stream.write(encode(batch).decode() + "\n")
        self.stream.flush()


class HttpSink:
    """Send each batch; on failure spool it; replay the spool oldest first while time allows."""

    def __init__(self, config: Config, sender: Any = None, spool: Any = None) -> None:
        from collector.sender import Sender, Token
        from collector.spool import Spool

        self.sender = sender or Sender(config.ingest_url, Token(config.token, config.token_file))
        self.spool = spool or Spool(config.spool_dir, config.spool_max_bytes)
        self._reported_dropped = 0

    def warnings(self) -> list[str]:
        dropped = self.spool.dropped
        if dropped > self._reported_dropped:
            self._reported_dropped = dropped
            return [f"spool: {dropped} batches dropped since start (spool size limit reached)"]
        return []

    def deliver(self, batch: dict[str, Any], deadline: float) -> None:
        body = gzip.compress(encode(batch), compresslevel=5)
        if len(self.spool):
            # Keep the order: the new batch queues behind the older ones.
            self.spool.add(body)
        else:
            outcome = self.sender.send(body, deadline)
            if outcome == "retry":
                self.spool.add(body)
        self.replay(deadline)

    def replay(self, deadline: float) -> None:
        replayed = 0
        stopping = getattr(self.sender, "stopping", lambda: False)
        while len(self.spool) and time.monotonic() < deadline and not stopping():
            item = self.spool.oldest()
            if item is None:
                break
            name, body = item
            outcome = self.sender.post_once(body)
            if outcome == "retry":
                break
            self.spool.remove(name)
            replayed += outcome == "stored"
        if replayed:
            log.info("replayed %d spooled batches, %d left", replayed, len(self.spool))


def run(config: Config, sink: Any = None, collector: Collector | None = None,
        metadata: Metadata | None = None, servers: ModelServers | None = None) -> int:
    roots = Roots(config.proc_root, config.sys_root, config.pod_log_dir, config.pod_resources_socket)
    collector = collector or Collector(roots)
    if metadata is None:
        metadata = Metadata.from_config(config, roots) if config.metadata != "none" else Metadata([])
    if sink is None:
        sink = PrintSink() if config.dry_run else HttpSink(config)
    if servers is None and config.model_servers == "true":
        servers = ModelServers()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    sender = getattr(sink, "sender", None)
    if sender is not None:
        # A shutdown during a retry pause ends the pause; the batch is spooled, not lost.
        sender.sleep = stop.wait
        sender.stopping = stop.is_set

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    interval = config.interval
    node = config.node
    log.info("collector starting: node %s, every %g s, %s", node, interval,
             "dry run" if config.dry_run else f"sending to {config.ingest_url}")
    previous = None
    sent = 0
    while not stop.is_set():
        tick = next_tick(time.time(), interval)
        # Wait on the wall clock, in steps no longer than the interval (the clock may be stepped).
        while not stop.is_set() and (wait := tick - time.time()) > 0:
            stop.wait(min(wait, interval))
        if stop.is_set():
            break
        if servers is not None and previous is not None:
            # Scrapes run while the node is read; the pods are those of the last cycle.
            servers.submit(tick, filter(None, map(metadata.get, previous.pods)))
        snap = collector.take(tick)
        workload_ids = {uid: {cid for cid, c in pod.containers.items() if c.sandbox is False}
                        for uid, pod in snap.pods.items()}
        snap.sources.update(metadata.refresh(set(snap.pods), workload_ids))
        if servers is not None:
            snap.serving, status = servers.harvest(tick)
            if status is not None:
                snap.sources["model_servers"] = status
        if previous is None:
            log.info("primed counters: %d pods", len(snap.pods))
        elif snap.monotonic - previous.monotonic > MAX_INTERVAL:
            # Suspended or stalled for over an hour: the server refuses such an interval, and
            # usage spread over it would say little. Start again from this reading.
            log.warning("%.0f s since the last reading; priming again",
                        snap.monotonic - previous.monotonic)
        else:
            batch = build_batch(previous, snap, node, metadata.get, interval, sink.warnings())
            if config.cluster_name:
                batch["cluster"] = config.cluster_name
            deadline = time.monotonic() + max(interval - SEND_MARGIN, interval / 2) - (
                time.time() - tick)
            sink.deliver(batch, deadline)
            sent += 1
            log.debug("batch %s: %d pods", batch["time"], len(batch["pods"]))
            if config.count is not None and sent >= config.count:
                break
        previous = snap
    if servers is not None:
        servers.close()
    log.info("collector stopped after %d batches", sent)
    return 0
