"""Attune's real schema for the tests: built with `../shared/attune-schema/apply.sh` (Attune's
own migrations) on the test server, once per run as a template database.

Where that folder is missing (a clone outside the workspace), PostgreSQL tests still run on
Attune-shaped tables that attuned creates, and the tests that must read Attune's real schema
are skipped, saying so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
SCHEMA_ENV = "ATTUNED_TEST_ATTUNE_SCHEMA"
_CANDIDATES = (REPO.parent / "shared" / "attune-schema", Path("/work/shared/attune-schema"))


def schema_dir() -> Path | None:
    """The folder holding Attune's migrations and apply.sh, if this machine has it."""
    configured = os.environ.get(SCHEMA_ENV)
    candidates = (Path(configured),) if configured else _CANDIDATES
    for candidate in candidates:
        if (candidate / "apply.sh").is_file():
            return candidate
    return None


MISSING_REASON = (
    f"Attune's schema (apply.sh) was not found at {' or '.join(map(str, _CANDIDATES))}; "
    f"set {SCHEMA_ENV}"
)


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def apply_schema(url: str) -> None:
    """Recreate the database of `url` with Attune's real schema (apply.sh drops it first)."""
    folder = schema_dir()
    assert folder is not None, MISSING_REASON
    parsed = make_url(url)
    args = ["bash", str(folder / "apply.sh"), str(parsed.database)]
    args += ["-h", parsed.host or "127.0.0.1"]
    args += ["-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    env = {**os.environ, **({"PGPASSWORD": parsed.password} if parsed.password else {})}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"apply.sh failed: {done.stdout}{done.stderr}"


def run_migrations(url: str) -> None:
    """Apply Attune's migrations to the existing database of `url`, in place (as apply.sh
    does after recreating it): for a database others are connected to."""
    folder = schema_dir()
    assert folder is not None, MISSING_REASON
    parsed = make_url(url)
    env = {**os.environ, **({"PGPASSWORD": parsed.password} if parsed.password else {})}
    env["PGOPTIONS"] = "--client-min-messages=warning"
    for migration in sorted((folder / "migrations").glob("*.sql")):
        args = ["psql", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432)]
        args += ["-U", parsed.username or "postgres", "-d", str(parsed.database)]
        args += ["-v", "ON_ERROR_STOP=1", "-q", "-f", str(migration)]
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, f"{migration.name} failed: {done.stderr}"


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """CREATE DATABASE `name` on the server of `server_url` (from `template` when given);
    its SQLAlchemy URL."""
    with psycopg.connect(libpq(server_url), autocommit=True) as conn:
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    head, _, _ = server_url.rpartition("/")
    return f"{head}/{name}"


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_attune_schema(url: str) -> str:
    """Give the (empty) database of `url` Attune's tables: the real ones where apply.sh is
    at hand, else attuned's own Attune-shaped ones. Returns `url`."""
    if schema_dir() is not None:
        apply_schema(url)
        return url
    from sqlalchemy import create_engine

    from attuned.store.attune import schema

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            schema.create(connection)
    finally:
        engine.dispose()
    return url
