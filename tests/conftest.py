"""Shared fixtures: real databases (SQLite file, and PostgreSQL when configured) and packs."""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from attuned.store.database import Database
from tests import attune_db

pytest_plugins = [
    "tests.pgcluster",  # throwaway PostgreSQL clusters
    "tests.rabbitmq",  # RabbitMQ vhosts
    "tests.reconcile.sources.git_servers",  # git_daemon, git_http serving a module's `repo`
    "tests.reconcile.sources.signing",  # alice and mallory, SSH signing keys
]

POSTGRES_ENV = "ATTUNED_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

_POSTGRES = pytest.param(
    "postgresql",
    marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(
            not os.environ.get(POSTGRES_ENV),
            reason=f"PostgreSQL tests need {POSTGRES_ENV} (e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres); .ci/run sets it",
        ),
    ],
)


def _server() -> str:
    """The PostgreSQL server the tests use; the test is skipped, saying why, without one."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}; .ci/run sets it")
    return os.environ[POSTGRES_ENV]


E2E_DIR = REPO / "tests" / "e2e"
# fixtures that start a server process: a test using one is end to end wherever it lives
SERVER_FIXTURES = frozenset(
    {"amqp", "pg_cluster_module", "daemon_factory", "git_daemon", "git_http"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `e2e` what starts the daemon or a server: every test under tests/e2e/, and every
    test using a server fixture, so the fast lane (`-m "not e2e and not slow"`) needs no list
    kept by hand."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if item.path.is_relative_to(E2E_DIR) or uses & SERVER_FIXTURES:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def attune_template() -> Iterator[str | None]:
    """A database holding Attune's real schema, built once per run with Attune's own
    migrations (apply.sh); each PostgreSQL test copies it. None when apply.sh is missing."""
    if not os.environ.get(POSTGRES_ENV) or attune_db.schema_dir() is None:
        yield None
        return
    base = os.environ[POSTGRES_ENV]
    name = f"attuned_attune_tmpl_{uuid.uuid4().hex[:8]}"
    url = attune_db.create_database(base, name)
    attune_db.apply_schema(url)
    try:
        yield name
    finally:
        attune_db.drop_database(base, name)


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (no Attune schema) for one test, dropped after."""
    base = _server()
    name = f"attuned_test_{uuid.uuid4().hex[:12]}"
    url = attune_db.create_database(base, name)
    try:
        yield url
    finally:
        attune_db.drop_database(base, name)


@pytest.fixture
def postgres_url(attune_template: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database holding Attune's schema (its real migrations when
    apply.sh is at hand, else the tables attuned makes), dropped after the test."""
    base = _server()
    name = f"attuned_test_{uuid.uuid4().hex[:12]}"
    url = attune_db.create_database(base, name, template=attune_template)
    if attune_template is None:
        attune_db.with_attune_schema(url)
    try:
        yield url
    finally:
        attune_db.drop_database(base, name)


@pytest.fixture
def attune_postgres_url(postgres_url: str, attune_template: str | None) -> str:
    """Like `postgres_url`, but always Attune's real schema: skipped (saying why) without it."""
    if attune_template is None:
        pytest.skip(attune_db.MISSING_REASON)
    return postgres_url


@pytest.fixture(params=["sqlite", _POSTGRES])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every database test runs on a real SQLite file and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'attuned.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


PASSING_TEST = """\
#!/bin/sh
echo "Total Tests: 2"
echo "Passed: 2"
echo "Failed: 0"
"""

PackFactory = Callable[..., Path]


@pytest.fixture
def make_pack(tmp_path: Path) -> PackFactory:
    """Write a pack directory: `make_pack("hello", files={...}, **manifest_overrides)`."""

    def make(
        ref: str = "hello",
        *,
        version: str = "1.0.0",
        test_script: str | None = PASSING_TEST,
        files: dict[str, str] | None = None,
        parent: Path | None = None,
        **manifest: Any,
    ) -> Path:
        root = (parent or tmp_path / "src") / ref
        root.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "ref": ref,
            "label": ref.title(),
            "description": f"The {ref} pack",
            "version": version,
        }
        if test_script is not None:
            data["testing"] = {
                "enabled": True,
                "runners": {
                    "shell": {
                        "type": "script",
                        "entry_point": "tests/run_tests.sh",
                        "timeout": 20,
                        "result_format": "simple",
                    }
                },
            }
            write(root / "tests/run_tests.sh", test_script, executable=True)
        data.update(manifest)
        (root / "pack.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        for rel, text in (files or {}).items():
            write(root / rel, text)
        return root

    return make


def write(path: Path, text: str, *, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    if executable:
        path.chmod(0o755)
    return path
