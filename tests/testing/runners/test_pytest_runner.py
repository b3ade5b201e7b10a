"""`pytest`: per-case counts through the JUnit report it is asked to write."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from attuned.settings.testing import SandboxMode
from attuned.testing import CaseStatus, TestExecutor
from tests.testing.conftest import FAST

TESTS = """
import pytest

def test_one():
    pass

def test_two():
    assert 2 + 2 == 5

@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    pass
"""


def py(entry: str = "tests", **spec: object) -> dict[str, object]:
    return {"type": "pytest", "entry_point": entry, **spec}


def test_default_simple_format_still_counts_per_test_case(run_pack):
    result = run_pack({"tests/test_math.py": TESTS}, {"py": py()})

    (suite,) = result.test_suites
    assert (suite.total, suite.passed, suite.failed) == (5, 4, 1)
    assert "tests.test_math.test_param[2]" in [c.name for c in suite.test_cases]
    assert "assert (2 + 2) == 5" in (suite.test_cases[1].error_message or "")


def test_args_are_passed_to_pytest(run_pack):
    result = run_pack({"tests/test_math.py": TESTS}, {"py": py(args=["-k", "param"])})

    assert (result.total_tests, result.passed) == (3, 3)
    assert result.gate.passed


def test_collection_error_is_a_failed_case(run_pack):
    result = run_pack({"tests/test_broken.py": "import not_a_module\n"}, {"py": py()})

    (suite,) = result.test_suites
    assert suite.failed >= 1
    assert "not_a_module" in (suite.test_cases[0].error_message or "")
    assert suite.test_cases[0].status is CaseStatus.ERROR


def test_no_tests_collected_is_an_empty_run_not_an_error(run_pack):
    result = run_pack({"tests/test_nothing.py": "x = 1\n"}, {"py": py()})

    (suite,) = result.test_suites
    assert suite.exit_code == 5
    assert suite.total == 0
    assert result.gate.reason.startswith("no tests were executed")


def test_two_pytest_runners_do_not_read_each_other_s_report(run_pack):
    result = run_pack(
        {"tests/a/test_a.py": "def test_a(): pass\n", "tests/b/test_b.py": "x = 1\n"},
        {"a": py("tests/a"), "b": py("tests/b")},
    )

    assert [s.total for s in result.test_suites] == [1, 0]


def test_interpreter_without_pytest_fails_with_its_message(make_pack, tmp_path):
    # -S hides site-packages: this interpreter has no pytest.
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    pack = make_pack({"tests/test_x.py": "def test_x(): pass\n"}, {"py": py()})

    result = TestExecutor().run(pack.path, pack.manifest, python=str(bare))

    (suite,) = result.test_suites
    assert (suite.total, suite.failed) == (1, 1)
    assert "No module named pytest" in (suite.stderr or "")
    assert (suite.test_cases[0].error_message or "").startswith("exited with code 1")


SYSTEM_PYTHON = Path("/usr/bin/python3")  # the test user cannot reach an interpreter under /root


@pytest.fixture(scope="module")
def nobody_python() -> Iterator[Path]:
    """An interpreter with pytest that user `nobody` can run: a venv of the system Python
    in a world-readable folder (pip installs pytest from the package index or its cache)."""
    if os.getuid() != 0:
        pytest.skip("testing.run_as needs root")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this host")
    if not SYSTEM_PYTHON.is_file():
        pytest.skip(f"no {SYSTEM_PYTHON}")
    root = Path(tempfile.mkdtemp(prefix="attuned-nobody-venv-"))
    root.chmod(0o755)
    try:
        venv = root / "venv"
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin/pip"), "install", "-q", "pytest"]
        subprocess.run(pip, check=True, timeout=300)
        yield venv / "bin/python"
    finally:
        shutil.rmtree(root)


@pytest.mark.slow
def test_an_unprivileged_test_user_writes_its_junit_report(run_pack, nobody_python: Path):
    settings = FAST.model_copy(
        update={"run_as": "nobody", "python": str(nobody_python), "sandbox": SandboxMode.NONE}
    )
    result = run_pack({"tests/test_math.py": TESTS}, {"py": py()}, settings=settings)

    (suite,) = result.test_suites
    # per case from the JUnit report, which `nobody` could not write into root's folder
    assert (suite.total, suite.passed, suite.failed) == (5, 4, 1)
    assert "tests.test_math.test_param[2]" in [c.name for c in suite.test_cases]
