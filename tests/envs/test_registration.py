"""Registration with pack environments: what is stored when the environment cannot be had,
which failures the daemon retries, and the upkeep of environments no pack needs any more."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from attuned.envs.python import PythonEnvironments
from attuned.envs.python.layout import MARKER
from attuned.reconcile import facts
from attuned.reconcile.apply import classify
from attuned.reconcile.model import FailureKind
from attuned.registry import EnvironmentNotReady, Outcome, Registry, TestsRolledBack
from attuned.settings.testing import ExecutorSettings
from attuned.store import registered_packs
from attuned.store.database import Database
from attuned.store.models import TestRun
from attuned.store.packstore import PackStore
from attuned.testing import TestExecutor
from tests.envs.conftest import TESTING, Wheels, write_pack

WARN = {
    "on_failure": "warn",
    "runners": {"shell": {"type": "script", "entry_point": "tests/run.sh"}},
}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'attuned.db'}")
    db.migrate()
    yield db
    db.dispose()


def make_registry(
    database: Database,
    tmp_path: Path,
    envs: PythonEnvironments | None,
    settings: ExecutorSettings = TESTING,
) -> Registry:
    return Registry(
        database,
        PackStore(tmp_path / "packs"),
        TestExecutor(settings),
        environments=envs,
        snapshots_dir=tmp_path / "snapshots",
    )


def executions(registry: Registry) -> list[TestRun]:
    with registry.db.read() as session:
        return list(session.exec(select(TestRun).order_by(TestRun.id)))


def registered(registry: Registry) -> list[str]:
    with registry.db.read() as session:
        return [p.ref for p in registered_packs.list_packs(session)]


def test_a_pack_with_dependencies_registers(
    database: Database, tmp_path: Path, shared_envs: PythonEnvironments
) -> None:
    registry = make_registry(database, tmp_path, shared_envs)
    pack = write_pack(tmp_path / "src", deps=["attuned_fixture_lib==1.0"])
    done = registry.register(pack.path)
    assert (done.outcome, done.test_result and done.test_result.passed) == (Outcome.REGISTERED, 3)


@pytest.mark.slow
def test_an_environment_that_cannot_be_built_is_stored_as_error_and_retried(
    database: Database, tmp_path: Path, wheels: Wheels
) -> None:
    secret_index = "https://deploy:s3cret-token@pypi.example.invalid/simple"
    envs = PythonEnvironments(tmp_path / "envs", wheels.settings(index_url=secret_index), TESTING)
    registry = make_registry(database, tmp_path, envs)
    pack = write_pack(  # on_failure: warn does not let an untested pack in
        tmp_path / "src", deps=["attuned_fixture_lib==9.0"], testing={"enabled": True, **WARN}
    )

    with pytest.raises(EnvironmentNotReady) as caught:
        registry.register(pack.path)

    reason = (
        "python environment for uses-lib could not be created: pip exited 1: "
        "ERROR: No matching distribution found for attuned_fixture_lib==9.0"
    )
    assert reason in str(caught.value)
    assert classify(caught.value) is FailureKind.TRANSIENT  # the daemon retries it
    assert registered(registry) == []
    [row] = executions(registry)
    assert (row.status, row.outcome, row.total_tests, row.gate_passed) == (
        "error",
        "environment_failed",
        0,
        False,
    )
    assert row.gate_reason == f"the tests could not run: {reason}"
    [suite] = row.result["test_suites"]
    assert suite["name"] == "environment"
    assert "Could not find a version that satisfies" in suite["stderr"]
    assert "pip install" in suite["stdout"]
    assert "PIP_INDEX_URL=https://***@pypi.example.invalid/simple" in suite["stdout"]
    assert "s3cret" not in json.dumps(row.result)
    with registry.db.read() as session:  # not remembered as bad content after a restart
        assert facts.remembered_failures(session) == {}
    assert [p.name for p in envs.root.iterdir() if not p.name.startswith(".")] == []


def test_a_missing_runtime_is_bad_content_for_this_host(database: Database, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/bin/sh", bin_dir / "sh")
    settings = TESTING.model_copy(update={"path": str(bin_dir)})
    registry = make_registry(database, tmp_path, None, settings)
    pack = write_pack(
        tmp_path / "src", runtime_deps=["shell", "nodejs"], testing={"enabled": True, **WARN}
    )

    with pytest.raises(TestsRolledBack) as caught:
        registry.register(pack.path)

    assert "runtime 'nodejs' (command 'node') is not installed on this host" in str(caught.value)
    assert classify(caught.value) is FailureKind.DETERMINISTIC
    [row] = executions(registry)
    assert (row.status, row.outcome) == ("error", "environment_failed")
    with registry.db.read() as session:  # a restart (after installing node) tries again
        assert facts.remembered_failures(session) == {}

    forced = registry.register(pack.path, force=True)  # Attune's force: register untested
    assert forced.outcome is Outcome.FORCED
    assert forced.test_result is not None and forced.test_result.status.value == "error"
    assert registered(registry) == ["uses-lib"]


def aged_env(envs: PythonEnvironments, key: str, age: float = 7200) -> Path:
    path = envs.path_for(key)
    path.mkdir(parents=True)
    (path / MARKER).write_text(json.dumps({"key": key}))
    then = time.time() - age
    os.utime(path / MARKER, (then, then))
    os.utime(path, (then, then))
    return path


def test_environments_of_stored_versions_and_snapshots_are_kept_the_rest_collected(
    database: Database, tmp_path: Path, wheels: Wheels
) -> None:
    envs = PythonEnvironments(tmp_path / "envs", wheels.settings(), TESTING)
    registry = make_registry(database, tmp_path, envs)
    stored = write_pack(tmp_path / "src", "stored", deps=["attuned_fixture_lib==1.0"])
    offered = write_pack(tmp_path / "src", "offered", requirements_txt="attuned_fixture_lib==2.0\n")
    registry.register(stored.path, skip_tests=True)
    shutil.copytree(offered.path, tmp_path / "snapshots" / offered.digest)
    kept_stored = aged_env(envs, envs.key_for(["attuned_fixture_lib==1.0"]))
    kept_offered = aged_env(envs, envs.key_for(["attuned_fixture_lib==2.0"]))
    unused = aged_env(envs, envs.key_for(["attuned_fixture_lib==3.0"]))

    assert registry.collect_environments() == [unused]
    assert kept_stored.is_dir() and kept_offered.is_dir()

    registry.unregister("stored")  # its version directory goes, and with it the last user
    assert not kept_stored.exists() and kept_offered.is_dir()
