"""Python environments for real: `python -m venv` and pip installing hand-made wheels from a
local directory, shared between packs, rebuilt when incomplete, collected when unused."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from attuned.envs.python import PythonEnvironments
from attuned.envs.python.layout import LAST_USED, LOCKS, MARKER
from attuned.envs.python.locks import KeyLock as _KeyLock
from attuned.envs.tester import PackTester, TestRun
from attuned.pack.loader import Pack
from attuned.settings.testing import ExecutorSettings
from attuned.testing import TestExecutor, TestStatus
from tests.envs.conftest import TESTING, Wheels, write_pack

LIB_1 = ["attuned_fixture_lib==1.0"]
LIB_2 = ["attuned_fixture_lib==2.0"]


def run(
    pack: Pack, envs: PythonEnvironments | None, settings: ExecutorSettings = TESTING
) -> TestRun:
    return PackTester(TestExecutor(settings), envs).run(pack.path, pack.manifest)


def output(run: TestRun) -> str:
    return "\n".join(
        f"{s.name}: {s.stdout or ''}{s.stderr or ''}"
        + "".join(c.error_message or "" for c in s.test_cases)
        for s in run.result.test_suites
    )


@pytest.mark.slow
def test_unittest_pytest_and_scripts_import_the_packs_dependency(
    shared_envs: PythonEnvironments, tmp_path: Path
) -> None:
    pack = write_pack(tmp_path, deps=LIB_1)
    done = run(pack, shared_envs)
    assert done.problem is None
    assert done.result.status is TestStatus.PASSED, output(done)
    assert [(s.name, s.passed) for s in done.result.test_suites] == [
        ("unit", 1),
        ("py", 1),
        ("shell", 1),
    ]
    env_dir = shared_envs.path_for(shared_envs.key_for(LIB_1))
    shell = done.result.test_suites[2].stdout or ""
    assert "lib 1.0" in shell and f"env {env_dir}" in shell  # python3 on PATH is the env's


def test_without_its_environment_the_pack_cannot_import_it(tmp_path: Path) -> None:
    pack = write_pack(tmp_path, deps=LIB_1)
    done = run(pack, None)  # no environments: testing.python as it is
    assert done.result.status is TestStatus.FAILED
    assert done.result.passed == 0
    assert "No module named 'attuned_fixture_lib'" in output(done)


def test_packs_with_the_same_dependencies_share_one_environment(
    shared_envs: PythonEnvironments, tmp_path: Path
) -> None:
    first = write_pack(tmp_path, "first", deps=LIB_1)
    second = write_pack(  # requirements.txt instead of pack.yaml, with comments
        tmp_path, "second", requirements_txt="# pinned for the tests\n\nattuned_fixture_lib==1.0\n"
    )
    assert run(first, shared_envs).result.status is TestStatus.PASSED
    with capture_logs() as logs:
        done = run(second, shared_envs)
    assert done.result.status is TestStatus.PASSED, output(done)
    assert [e for e in logs if e["event"] == "env.created"] == []
    env_dir = shared_envs.path_for(shared_envs.key_for(LIB_1))
    assert f"env {env_dir}" in (done.result.test_suites[2].stdout or "")
    assert (env_dir / LAST_USED).stat().st_mtime > time.time() - 60


@pytest.mark.slow
def test_other_pins_get_their_own_environment_built_once_even_by_two_packs_at_once(
    shared_envs: PythonEnvironments, tmp_path: Path
) -> None:
    env_dir = shared_envs.path_for(shared_envs.key_for(LIB_2))
    assert env_dir != shared_envs.path_for(shared_envs.key_for(LIB_1))
    env_dir.mkdir(parents=True)  # what a crash in the middle of a build leaves: no marker
    (env_dir / "half-written").write_text("x")
    packs = [write_pack(tmp_path, f"two-{i}", version="2.0", deps=LIB_2) for i in range(2)]

    with capture_logs() as logs, ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda pack: run(pack, shared_envs), packs))

    assert [r.result.status for r in runs] == [TestStatus.PASSED] * 2, output(runs[0])
    [created] = [e for e in logs if e["event"] == "env.created"]
    assert (created["env"], created["requirements"]) == (env_dir.name, 1)
    assert not (env_dir / "half-written").exists()  # rebuilt from scratch
    marker = json.loads((env_dir / MARKER).read_text())
    assert marker["requirements"] == LIB_2 and marker["key"] == shared_envs.key_for(LIB_2)
    assert all(f"env {env_dir}" in (r.result.test_suites[2].stdout or "") for r in runs)


def test_a_creation_that_takes_too_long_is_an_error_that_says_so(
    wheels: Wheels, tmp_path: Path
) -> None:
    envs = PythonEnvironments(tmp_path / "envs", wheels.settings(create_timeout=0.5), TESTING)
    pack = write_pack(tmp_path, deps=LIB_1)
    started = time.monotonic()
    done = run(pack, envs)
    assert time.monotonic() - started < 10
    assert done.problem is not None and done.problem.transient
    result = done.result
    assert (result.status, result.total_tests, result.gate.passed) == (TestStatus.ERROR, 0, False)
    assert result.gate.reason.startswith(
        "the tests could not run: python environment for uses-lib could not be created: "
        "python -m venv timed out"
    )
    assert "longer than 0.5 s (environments.create_timeout)" in result.gate.reason
    [suite] = result.test_suites
    assert (suite.name, suite.runner_type, suite.total) == ("environment", "environment", 0)
    assert "-m venv" in (suite.stdout or "")
    assert [p.name for p in envs.root.iterdir() if not p.name.startswith(".")] == []


def test_a_missing_runtime_blocks_before_anything_is_built(
    shared_envs: PythonEnvironments, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/bin/sh", bin_dir / "sh")
    settings = TESTING.model_copy(update={"path": str(bin_dir)})
    pack = write_pack(tmp_path, deps=["attuned_fixture_lib==3.0"], runtime_deps=["shell", "nodejs"])
    with capture_logs() as logs:
        done = run(pack, shared_envs, settings)
    assert done.problem is not None and not done.problem.transient
    assert done.result.status is TestStatus.ERROR
    assert done.result.gate.reason == (
        "the tests could not run: runtime 'nodejs' (command 'node') is not installed on this "
        f"host: not found on PATH={bin_dir}"
    )
    assert [e["event"] for e in logs] == ["env.runtime.missing"]


def test_keys_follow_requirements_interpreter_and_sources(wheels: Wheels, tmp_path: Path) -> None:
    def key(requirements: list[str], **settings: object) -> str:
        envs = PythonEnvironments(tmp_path, wheels.settings(**settings), TESTING)
        return envs.key_for(requirements)

    base = key(["b==1", "a==2"])
    assert key(["a==2", "b==1", "a==2"]) == base  # order and duplicates do not matter
    assert key(["a==2", "b==2"]) != base
    assert key(["b==1", "a==2"], inherit_runner_packages=False) != base
    with_token = key(LIB_1, index_url="https://user:token-1@pypi.example/simple")
    assert key(LIB_1, index_url="https://user:token-2@pypi.example/simple") == with_token
    assert key(LIB_1, index_url="https://user:token-1@other.example/simple") != with_token
    other_python = PythonEnvironments(
        tmp_path, wheels.settings(), TESTING.model_copy(update={"python": "/usr/bin/python3"})
    )
    if Path("/usr/bin/python3").exists():
        assert other_python.key_for(LIB_1) != key(LIB_1)


# --- garbage collection ------------------------------------------------------------------


def fake_env(envs: PythonEnvironments, name: str, *, age: float, complete: bool = True) -> Path:
    path = envs.root / name
    path.mkdir(parents=True)
    if complete:
        (path / MARKER).write_text(json.dumps({"key": name * 4}))
        (path / LAST_USED).touch()
    then = time.time() - age
    for item in (path / MARKER, path / LAST_USED, path):
        if item.exists():
            os.utime(item, (then, then))
    return path


def test_collection_removes_what_nobody_used_for_the_grace_period_only(
    wheels: Wheels, tmp_path: Path
) -> None:
    envs = PythonEnvironments(tmp_path / "envs", wheels.settings(unused_grace=600), TESTING)
    unused = fake_env(envs, "a" * 16, age=3600)
    recent = fake_env(envs, "b" * 16, age=60)
    used = fake_env(envs, "c" * 16, age=3600)
    busy = fake_env(envs, "d" * 16, age=3600)
    crashed = fake_env(envs, "e" * 16, age=3600, complete=False)
    build_leftover = envs.root / f".build-{'f' * 16}-x"
    build_leftover.mkdir()
    (envs.root / LOCKS).mkdir()
    (envs.root / LOCKS / f"{'9' * 16}.lock").touch()  # a failed build's lock
    holder = _KeyLock(envs.root / LOCKS / f"{'d' * 16}.lock")
    assert holder.acquire(exclusive=False)  # a test run is using it right now
    try:
        with capture_logs() as logs:
            removed = envs.collect_garbage({"c" * 64})
    finally:
        holder.release()
    assert removed == [unused, crashed]
    assert all(p.is_dir() for p in (recent, used, busy))
    assert not build_leftover.exists()
    assert sorted(p.name for p in (envs.root / LOCKS).iterdir()) == [f"{'d' * 16}.lock"]
    assert [(e["event"], e["env"], e["reason"]) for e in logs] == [
        ("env.removed", "a" * 16, "unused"),
        ("env.removed", "e" * 16, "incomplete"),
    ]
    assert envs.collect_garbage(set(), grace=0) == [recent, used, busy]


def test_listing_shows_each_environment(shared_envs: PythonEnvironments, tmp_path: Path) -> None:
    pack = write_pack(tmp_path, deps=LIB_1)
    assert run(pack, shared_envs).result.status is TestStatus.PASSED
    listed = {e.path.name: e for e in shared_envs.list()}
    env = listed[shared_envs.path_for(shared_envs.key_for(LIB_1)).name]
    assert env.complete and env.marker["requirements"] == LIB_1
    assert env.size_bytes > 100_000  # a venv with pip
    assert env.last_used > time.time() - 60
