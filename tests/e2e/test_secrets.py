"""No secret appears anywhere attuned writes: logs, status file, metrics file, database.

The daemon runs against PostgreSQL with a password in its URL and follows a git repository
behind HTTP basic auth with a password file, including a failed login (wrong password)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import EXAMPLES, POSTGRES_ENV
from tests.e2e.conftest import DaemonProcess
from tests.reconcile.sources.git_servers import PackRepo, SmartHttpServer

DB_SECRET = "s3cr3t-db-pw-4711"
GIT_SECRET = "s3cr3t-git-pw-0815"
WRONG_SECRET = "s3cr3t-wrong-pw-2323"

pytestmark = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV), reason=f"the database part needs {POSTGRES_ENV}"
)


@pytest.fixture
def db_url(postgres_url: str) -> str:
    # trust auth ignores the password, but every component that sees the URL sees it
    return postgres_url.replace("postgres@", f"postgres:{DB_SECRET}@", 1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[SmartHttpServer, PackRepo]]:
    repo = PackRepo(tmp_path / "git")
    shutil.copytree(EXAMPLES / "hello", repo.work / "hello")
    repo.commit("hello")
    repo.push("main")
    http = SmartHttpServer(repo.bare.parent, auth=("bob", GIT_SECRET))
    http.start()
    yield http, repo
    http.stop()


def test_no_secret_in_logs_status_metrics_or_database(
    daemon_factory: Callable[..., DaemonProcess],
    server: tuple[SmartHttpServer, PackRepo],
    tmp_path: Path,
    db_url: str,
) -> None:
    http, _repo = server
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(GIT_SECRET + "\n")
    wrong.write_text(WRONG_SECRET + "\n")
    daemon = daemon_factory()
    metrics = tmp_path / "metrics.prom"
    daemon.config["metrics_file"] = str(metrics)
    daemon.config["log"]["file"] = str(tmp_path / "attuned.log")
    source = {
        "type": "git",
        "url": http.url("packs.git"),
        "ref": {"branch": "main"},
        "interval": 1,
        "jitter": 0,
        "timeout": 10,
    }
    daemon.config["sources"] = [
        {"name": "good", **source, "credentials": {"username": "bob", "password_file": str(right)}},
        {
            "name": "bad",
            **source,
            "path": "nothing",
            "credentials": {"username": "bob", "password_file": str(wrong)},
        },
    ]
    daemon.start()
    daemon.wait_pack("hello", "active")
    status = daemon.wait_for(lambda s: s["sources"][1]["error"] is not None, what="auth error")
    assert "auth" in status["sources"][1]["error"].lower() or "401" in status["sources"][1]["error"]
    shown = subprocess.run(
        [sys.executable, "-m", "attuned", "config", "show", "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert daemon.stop() == 0

    written = {
        "daemon log (stdout)": daemon.log_path.read_text(),
        "log file": (tmp_path / "attuned.log").read_text(),
        "status file": daemon.status_path.read_text(),
        "metrics file": metrics.read_text(),
        "config show": shown.stdout + shown.stderr,
        "database": dump_database(db_url),
    }
    assert all(text for text in written.values())
    for where, text in written.items():
        for secret in (DB_SECRET, GIT_SECRET, WRONG_SECRET):
            assert secret not in text, f"{secret} found in the {where}"


def dump_database(url: str) -> str:
    """Every text and JSON value in every table attuned writes, Attune's and its own
    (bytea skipped: pack archives)."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    lines = []
    with psycopg.connect(libpq) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname IN ('attune', 'attuned', 'public')"
        ).fetchall()
        assert {s for s, _ in tables} >= {"attune", "attuned"}
        for schema, table in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                lines.extend(str(v) for v in row if not isinstance(v, bytes | memoryview))
    return "\n".join(lines)
