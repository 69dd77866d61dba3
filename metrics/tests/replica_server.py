"""A real streaming replica of the test PostgreSQL server, for tests of READ_DATABASE_URL.

`StreamingReplica(primary_dsn)` takes a base backup of the primary with `pg_basebackup -X stream
-R` into a temporary folder and starts it as a hot standby on a free local port; `stop()` stops it
and removes the folder. No replication slot is made, so nothing stays behind on the primary if a
run is killed.

The primary must accept replication connections from 127.0.0.1. When it does not and this
process is root on the server's machine, one line is appended to its pg_hba.conf and the
configuration reloaded: `host replication <user> 127.0.0.1/32 trust` (additive, harmless to
other users of the server, and left there so concurrent runs do not race over it). As root, the
replica runs as the `postgres` system user (PostgreSQL refuses to run as root).

`unavailable_reason()` says why a replica cannot be made here, for a clear pytest skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from metrics.tests.gunicorn_server import free_port

HBA_LINE = "host replication {user} 127.0.0.1/32 trust  # kubemonitor tests: streaming replica\n"
# Hot standby refuses to start when these are below the primary's.
MATCHED_SETTINGS = (
    "max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
    "max_locks_per_transaction", "shared_preload_libraries",
)


def _show(conn: psycopg.Connection, name: str) -> str:
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


class Unavailable(Exception):
    pass


class StreamingReplica:
    def __init__(self, primary: dict[str, Any]) -> None:
        self.primary = primary  # host, port, user, dbname
        self.port = free_port()
        self.base: Path | None = None
        self.run_as: pwd.struct_passwd | None = None
        self.bindir: Path | None = None

    # -- preparing ----------------------------------------------------------------------------

    def _connect(self, **extra: Any) -> psycopg.Connection:
        return psycopg.connect(**{**self.primary, **extra}, autocommit=True, connect_timeout=5)

    def _replication_allowed(self) -> bool:
        # A physical replication connection, as pg_basebackup makes (matched by pg_hba.conf's
        # `replication` lines); only a refusal by pg_hba.conf means no.
        try:
            with self._connect(replication="true"):
                return True
        except psycopg.OperationalError as exc:
            return "pg_hba.conf" not in str(exc)

    def prepare(self) -> None:
        """Check what is needed, allowing replication in pg_hba.conf if need be; raise Unavailable."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if not row or not row[0]:
                raise Unavailable(f"the role {self.primary['user']} may not replicate")
            major = int(_show(conn, "server_version_num")) // 10000
            if _show(conn, "wal_level") == "minimal":
                raise Unavailable("the test server has wal_level = minimal")
            self.settings = {name: _show(conn, name) for name in MATCHED_SETTINGS}
            hba = Path(_show(conn, "hba_file"))
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            backend_pid = row[0]
        # The server's own programs first (its backend's executable, when it runs on this
        # machine), so that pg_basebackup and postgres match its major version.
        candidates = []
        try:
            candidates.append(Path(os.readlink(f"/proc/{backend_pid}/exe")).parent)
        except OSError:
            pass
        candidates.append(Path(f"/usr/lib/postgresql/{major}/bin"))
        for candidate in candidates:
            if (candidate / "pg_basebackup").exists() and (candidate / "pg_ctl").exists():
                self.bindir = candidate
                break
        if self.bindir is None:
            found = shutil.which("pg_basebackup")
            if found is None:
                raise Unavailable(f"no pg_basebackup for PostgreSQL {major} on this machine")
            self.bindir = Path(found).parent
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("root, but no postgres system user to run a replica as") from None
        if not self._replication_allowed():
            if os.geteuid() != 0 or not hba.is_file():
                raise Unavailable(
                    "the test server refuses replication connections from 127.0.0.1 and this run "
                    "cannot change its pg_hba.conf (not root, or not on the server's machine)"
                )
            line = HBA_LINE.format(user=self.primary["user"])
            if line not in hba.read_text():
                with hba.open("a") as f:
                    f.write(line)
            with self._connect() as conn:
                conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while not self._replication_allowed():
                if time.monotonic() > deadline:
                    raise Unavailable(f"replication still refused after adding a line to {hba}")
                time.sleep(0.2)

    # -- running ------------------------------------------------------------------------------

    def _run(self, *argv: str, timeout: float = 300) -> None:
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            kwargs.update(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[])
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, cwd="/", **kwargs
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> "StreamingReplica":
        assert self.bindir is not None
        self.base = Path(tempfile.mkdtemp(prefix="kubemonitor-replica-"))
        if self.run_as is not None:
            os.chown(self.base, self.run_as.pw_uid, self.run_as.pw_gid)
        data = self.base / "data"
        self._run(
            str(self.bindir / "pg_basebackup"), "-h", str(self.primary["host"]), "-p", str(self.primary["port"]),
            "-U", self.primary["user"], "-D", str(data), "-X", "stream", "-R", "-c", "fast", "--no-sync",
        )
        conf = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.base}'",
            "hot_standby = on",
            # Answer at once rather than wait while the primary's vacuum removes rows a query needs.
            "max_standby_streaming_delay = 5s",
            "fsync = off",
            f"hba_file = '{data / 'pg_hba.conf'}'",
            f"ident_file = '{data / 'pg_ident.conf'}'",
        ]
        conf += [f"{name} = '{value}'" for name, value in self.settings.items()]
        (data / "postgresql.conf").write_text("\n".join(conf) + "\n")
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        (data / "pg_ident.conf").write_text("")
        if self.run_as is not None:
            for path in (data / "postgresql.conf", data / "pg_hba.conf", data / "pg_ident.conf"):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.base / "log"), "-w", "-t", "60", "start")
        return self

    def dsn(self, dbname: str) -> dict[str, Any]:
        return {**self.primary, "port": self.port, "dbname": dbname}

    def wait_until_replayed(self, dbname: str, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary had written when this was called."""
        with self._connect() as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
            target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(**self.dsn(dbname), autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()
                if row and row[0]:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the replica did not replay up to {target} within {timeout} s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.base is None:
            return
        data = self.base / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
            except RuntimeError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
