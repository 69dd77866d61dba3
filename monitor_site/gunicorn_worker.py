"""A gunicorn worker that reads each whole request before a thread runs the application.

With the sync worker (and with gthread as it stands) a thread reads the request body itself, so a
client that declares 100,000 bytes and sends half holds a worker until gunicorn's timeout, and a
few such clients stall the API (issue 8). This worker keeps gunicorn's threaded worker (gthread)
and moves the reading into its event loop: a new or kept-alive connection is read without
blocking, alongside every other, until its headers and its whole body (by Content-Length, or to
the last chunk) are in memory; only then is it handed to the thread pool, which parses it from
that buffer. A stalled or slow client costs a buffer and a poller slot, never a thread, and is
closed when it has not delivered its request within REQUEST_READ_TIMEOUT seconds.

The thread that runs the application writes the answer with a send timeout (SEND_TIMEOUT), so a
client that stops reading its answer cannot hold it either.

Left to gthread's own path: TLS (gunicorn terminates it in the thread), HTTP/2, and a request
whose declared body is larger than anything the API accepts (the application answers 413 from
its headers). Settings, read once per worker from the environment:
GUNICORN_REQUEST_READ_TIMEOUT (default 15 s), GUNICORN_SEND_TIMEOUT (default 30 s),
GUNICORN_MAX_BUFFERED_BYTES (default 16 MiB, above INGEST_MAX_BODY_BYTES' default).
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import socket
import time
from collections import deque
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

REQUEST_READ_TIMEOUT = float(os.environ.get("GUNICORN_REQUEST_READ_TIMEOUT", "15"))
SEND_TIMEOUT = float(os.environ.get("GUNICORN_SEND_TIMEOUT", "30"))
MAX_BUFFERED_BYTES = int(os.environ.get("GUNICORN_MAX_BUFFERED_BYTES", str(16 * 1024 * 1024)))
# Headers larger than this are gunicorn's to refuse (limit_request_field_size and friends).
MAX_HEADER_BYTES = 64 * 1024
READ_SIZE = 64 * 1024

_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.IGNORECASE | re.MULTILINE)
_HTTP2_PREFACE = b"PRI * HTTP/2.0"


def request_complete(buffer: bytes | bytearray) -> bool:
    """Whether `buffer` holds a whole HTTP/1 request (headers and body), or as much of it as this
    worker will ever hold: the thread takes it from there and reads the rest itself."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return len(buffer) > MAX_HEADER_BYTES or buffer.startswith(_HTTP2_PREFACE)
    head = bytes(buffer[:end])
    body_start = end + 4
    if _CHUNKED.search(head):
        return _chunked_complete(buffer, body_start) or len(buffer) > MAX_BUFFERED_BYTES
    match = _CONTENT_LENGTH.search(head)
    if match is None:
        return True  # no body
    length = int(match.group(1))
    if length > MAX_BUFFERED_BYTES:
        return True  # refused from its headers (413) without reading the body
    return len(buffer) - body_start >= length


def _chunked_complete(buffer: bytes | bytearray, position: int) -> bool:
    """Whether the chunked body starting at `position` has arrived up to its final CRLF."""
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return False
        size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return True  # malformed: gunicorn's parser answers it
        position = line_end + 2
        if size == 0:
            # Optional trailers, then an empty line.
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return False
                if line_end == position:
                    return True
                position = line_end + 2
        position += size + 2
        if position > len(buffer):
            return False


class BufferingWorker(ThreadWorker):
    """gthread, but a connection reaches a thread only with its whole request read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections being read, oldest first: (deadline, connection).
        self.reading: deque[tuple[float, TConn]] = deque()

    def _buffering(self) -> bool:
        return not self.cfg.is_ssl

    def accept(self, listener: socket.socket) -> None:
        if not self._buffering():
            return super().accept(listener)
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        self._start_reading(conn)

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        # A kept-alive connection's next request: read it whole too.
        if not self._buffering():
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.sock.setblocking(False)
        self._start_reading(conn)

    def _start_reading(self, conn: TConn) -> None:
        conn.km_buffer = bytearray()  # type: ignore[attr-defined]
        entry = (time.monotonic() + REQUEST_READ_TIMEOUT, conn)
        conn.km_entry = entry  # type: ignore[attr-defined]
        self.reading.append(entry)
        self.poller.register(conn.sock, selectors.EVENT_READ, lambda sock, c=conn: self._on_readable(c))

    def _stop_reading(self, conn: TConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            self.reading.remove(conn.km_entry)  # type: ignore[attr-defined]
        except ValueError:
            pass

    def _on_readable(self, conn: TConn) -> None:
        buffer: bytearray = conn.km_buffer  # type: ignore[attr-defined]
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        buffer += data
        if not request_complete(buffer):
            return
        self._stop_reading(conn)
        conn.km_ready = bytes(buffer)  # type: ignore[attr-defined]
        conn.km_buffer = None  # type: ignore[attr-defined]
        conn.data_ready = True  # gthread must not wait for data again
        self.enqueue_req(conn)

    def handle(self, conn: TConn) -> Any:
        ready = getattr(conn, "km_ready", None)
        if ready is not None:
            conn.km_ready = None  # type: ignore[attr-defined]
            conn.init()
            conn.parser.unreader.unread(ready)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: TConn) -> Any:
        # After parsing (gthread makes the socket blocking before it): bound the answer's writes.
        conn.sock.settimeout(SEND_TIMEOUT)
        return super().handle_request(req, conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0][0] <= now:
            _, conn = self.reading[0]
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
