"""A throwaway PostgreSQL cluster for tests that stop, kill or restart the server.

The postmaster is our own child (started with `user=postgres`, not through pg_ctl), so
`kill()` is a real SIGKILL of the server and we reap it ourselves, whatever PID 1 does.
initdb refuses root: as root, every server binary runs as user postgres in a temp dir
chowned to it. Use the `pg_cluster` fixture (a running cluster per test, one initdb per
module); make it visible with `pytest_plugins = ["tests.pgcluster"]` or an import.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

SERVER_USER = "postgres"
_SHARED_MEMORY_BUSY = "pre-existing shared memory block"


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL binaries, else the ones on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def unavailable() -> str | None:
    """Why no throwaway cluster can start here, or None."""
    bindir = find_bindir()
    if bindir is None or not (bindir / "postgres").exists():
        return "PostgreSQL server binaries (initdb, postgres) not found; .ci/run installs them"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run initdb as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has let go of everything: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


class ThrowawayCluster:
    """initdb in a temp dir, one postmaster on 127.0.0.1:<free port>, trust auth."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(unavailable() or "no PostgreSQL binaries")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="attuned-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = None
        self._orphans: list[int] = []  # backends of a killed postmaster, until they exit

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle -------------------------------------------------------------------------

    def _run_as_server_user(self) -> dict[str, Any]:
        if not self._as_root:
            return {"cwd": self.root}
        return {"cwd": self.root, "user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}

    def initdb(self) -> None:
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                *("-D", str(self.data), "-U", "postgres", "--auth=trust"),
                *("--no-sync", "--no-locale", "--encoding=UTF8"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._run_as_server_user(),
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the postmaster (initdb first if needed) and wait until it accepts queries."""
        if self.running:
            return
        if not (self.data / "PG_VERSION").exists():
            self.initdb()
        deadline = time.monotonic() + timeout
        self._wait_for_orphans(deadline)
        while True:
            if self._launch_and_wait(deadline):
                return
            log = self.log.read_text(errors="replace")
            if _SHARED_MEMORY_BUSY not in log or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}")
            time.sleep(0.2)  # backends of a killed server still hold shared memory

    def _launch_and_wait(self, deadline: float) -> bool:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "shared_buffers": "16MB",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **self._run_as_server_user(),
            )
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.libpq_url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.kill()
        return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are ended, the server exits cleanly."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; its backends exit on their own."""
        if self._proc is not None and self._proc.poll() is None:
            self._orphans = _children(self._proc.pid)
            self._proc.kill()
            self._proc.wait(timeout=30)

    def _wait_for_orphans(self, deadline: float) -> None:
        while any(_alive(pid) for pid in self._orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self._orphans:
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self._orphans = []

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` holding Attune's schema (what attuned writes into); its
        SQLAlchemy URL."""
        from tests import attune_db

        with psycopg.connect(self.libpq_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return attune_db.with_attune_schema(self.url_for(name))

    def cleanup(self) -> None:
        """Stop the server and delete everything it wrote."""
        self.stop()
        self._wait_for_orphans(time.monotonic() + 5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_cluster_module() -> Iterator[ThrowawayCluster]:
    """One initdb per test module (~1 s); tests may stop or kill it."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = ThrowawayCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def pg_cluster(pg_cluster_module: ThrowawayCluster) -> ThrowawayCluster:
    """The module's cluster, running when the test starts (restarted if a test killed it)."""
    pg_cluster_module.start()
    return pg_cluster_module
