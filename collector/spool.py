"""Bounded on-disk spool of gzipped batches the API has not accepted yet.

One file per batch, named so that names sort oldest first; written to a temporary name and
renamed, so a crash never leaves half a batch. When a new batch would push the spool past its
size limit the oldest batches are dropped and counted. Replaying in name order sends the
oldest first; the server's ingest is idempotent on (node, time), so a batch replayed twice (we
crashed between the POST and the unlink) is stored once.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("collector.spool")

SUFFIX = ".json.gz"


class Spool:
    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0  # batches dropped for space since start
        self._seq = 0
        self._files: list[tuple[str, int]] = []  # (name, size), oldest first
        try:
            os.makedirs(directory, exist_ok=True)
            names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
            for name in names:
                try:
                    self._files.append((name, os.path.getsize(os.path.join(directory, name))))
                except OSError:
                    continue
        except OSError as exc:
            log.warning("spool directory %s unusable (%s); failed batches will be lost",
                        directory, exc)
            self.directory = ""
        if self._files:
            log.info("spool holds %d batches (%d bytes) from before; replaying them",
                     len(self._files), self.size)

    @property
    def size(self) -> int:
        return sum(size for _, size in self._files)

    def __len__(self) -> int:
        return len(self._files)

    def add(self, body: bytes) -> None:
        if not self.directory:
            self.dropped += 1
            return
        if len(body) > self.max_bytes:
            self.dropped += 1
            log.warning("batch of %d bytes is larger than the spool limit; dropped", len(body))
            return
        dropped_now = 0
        while self._files and self.size + len(body) > self.max_bytes:
            name, _ = self._files.pop(0)
            self._unlink(name)
            dropped_now += 1
        if dropped_now:
            self.dropped += dropped_now
            log.warning("spool full (%d bytes): dropped the %d oldest batches (%d dropped since "
                        "start)", self.max_bytes, dropped_now, self.dropped)
        self._seq += 1
        name = f"{time.time_ns():020d}-{self._seq:06d}{SUFFIX}"
        path = os.path.join(self.directory, name)
        try:
            with open(path + ".tmp", "wb") as f:
                f.write(body)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            self.dropped += 1
            log.warning("could not write spool file %s: %s; batch dropped", path, exc)
            return
        self._files.append((name, len(body)))

    def oldest(self) -> tuple[str, bytes] | None:
        while self._files:
            name = self._files[0][0]
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    return name, f.read()
            except OSError:  # removed behind our back: forget it
                self._files.pop(0)
        return None

    def remove(self, name: str) -> None:
        self._files = [(n, s) for n, s in self._files if n != name]
        self._unlink(name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, name))
        except OSError:
            pass
