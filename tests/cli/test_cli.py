"""The `attuned` command as a user runs it: a real config and database, the command run
in-process through `main()` (tests/cli/inprocess.py), and end to end as a real subprocess
for every verb once (`test_every_verb_end_to_end`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from attuned.store.database import HEAD_REVISION
from tests.cli.inprocess import run_attuned, subprocess_attuned
from tests.conftest import EXAMPLES, POSTGRES_ENV, PackFactory


class Cli:
    """`attuned ARGS --config <this test's config>`: in-process, or with `real=True` as a
    subprocess; asserts the exit code."""

    def __init__(self, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.cwd = tmp_path
        self.capsys = capsys
        self.config = tmp_path / "attuned.yaml"
        self.config.write_text(
            f"state_dir: {tmp_path / 'state'}\ndatabase:\n  url: {db_url}\n"
            "testing:\n  kill_grace: 0.5\n"
        )

    def __call__(
        self, *args: str | Path, code: int = 0, real: bool = False
    ) -> subprocess.CompletedProcess[str]:
        argv = [*args, "--config", self.config]
        if real:
            proc = subprocess_attuned(argv, cwd=self.cwd)
        else:
            proc = run_attuned(argv, self.capsys, cwd=self.cwd)
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str | Path, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


@pytest.fixture
def cli(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, db_url, capsys)


def test_register_json_shape_and_listing(cli: Cli) -> None:
    out = cli.json("register", EXAMPLES / "hello")
    assert out["tests_skipped"] is False and out["pack"]["ref"] == "hello"
    result = out["test_result"]
    assert {
        k: result[k]
        for k in (
            "pack_ref",
            "pack_version",
            "status",
            "total_tests",
            "passed",
            "failed",
            "skipped",
            "pass_rate",
        )
    } == {
        "pack_ref": "hello",
        "pack_version": "1.0.0",
        "status": "passed",
        "total_tests": 3,
        "passed": 3,
        "failed": 0,
        "skipped": 0,
        "pass_rate": 1.0,
    }
    assert {"execution_time", "duration_ms", "test_suites"} <= set(result)
    suite = result["test_suites"][0]
    assert {
        "name",
        "runner_type",
        "total",
        "passed",
        "failed",
        "skipped",
        "duration_ms",
        "test_cases",
    } <= set(suite)
    assert {"name", "status", "duration_ms", "error_message", "stdout", "stderr"} <= set(
        suite["test_cases"][0]
    )
    [listed] = cli.json("packs")
    assert (listed["ref"], listed["version"], listed["last_test_status"]) == (
        "hello",
        "1.0.0",
        "passed",
    )
    assert listed["digest"] == out["pack"]["digest"] and listed["origin"].endswith("examples/hello")


def test_exit_codes(cli: Cli, make_pack: PackFactory) -> None:
    cli("register", EXAMPLES / "hello")
    conflict = cli("register", EXAMPLES / "hello", code=3)
    assert "already registered" in conflict.stderr
    failed = cli("register", EXAMPLES / "failing", code=4)
    assert "rolled back" in failed.stderr and "--force" in failed.stderr
    assert "division by zero is not refused" not in failed.stderr
    bad = make_pack("bad", version="x.y")
    invalid = cli("register", bad, code=2)
    assert "pack.yaml:4: version: 'x.y' is not a semantic version" in invalid.stderr
    assert cli("register", code=2).stderr.startswith("usage:")


def test_failing_pack_json_shows_result_and_no_pack(cli: Cli) -> None:
    out = cli.json("register", EXAMPLES / "failing", code=4)
    assert out["pack"] is None and out["test_result"]["status"] == "failed"
    assert cli.json("packs") == []
    [run] = cli.json("history", "failing")
    assert (run["status"], run["outcome"], run["gate_passed"]) == ("failed", "rolled_back", False)
    assert "1.0" in run["gate_reason"] or "min_pass_rate" in run["gate_reason"]


def test_force_registers_failing_pack(cli: Cli) -> None:
    out = cli.json("register", EXAMPLES / "failing", "--force")
    assert out["outcome"] == "forced" and out["pack"]["ref"] == "failing"


def test_skip_tests(cli: Cli) -> None:
    out = cli.json("register", EXAMPLES / "failing", "--skip-tests")
    assert out["tests_skipped"] is True and out["test_result"] is None


def test_show_history_unregister(cli: Cli) -> None:
    cli("register", EXAMPLES / "hello")
    cli("register", EXAMPLES / "welcome")
    shown = cli.json("show", "hello")
    assert [c["ref"] for c in shown["components"]] == ["hello.arrived", "hello.greet"]
    assert shown["latest_test"]["status"] == "passed"
    human = cli("show", "hello").stdout
    assert "hello 1.0.0" in human and "action" in human and "tests: passed, 3/3 passed" in human
    refused = cli("unregister", "hello", code=3)
    assert "needed by welcome" in refused.stderr
    cli("unregister", "welcome")
    cli("unregister", "hello")
    assert cli.json("packs") == []
    assert len(cli.json("history", "hello")) == 1  # audit survives
    assert cli("show", "hello", code=2).stderr.strip() == "error: pack 'hello' is not registered"


def test_validate_and_test_touch_no_database(cli: Cli, tmp_path: Path) -> None:
    out = cli.json("validate", EXAMPLES / "hello")
    assert out["valid"] and {c["ref"] for c in out["components"]} == {
        "hello.greet",
        "hello.arrived",
    }
    assert "is valid (1 action, 1 trigger" in cli("validate", EXAMPLES / "hello").stdout
    result = cli.json("test", EXAMPLES / "hello")
    assert result["status"] == "passed"
    assert cli.json("test", EXAMPLES / "failing", code=4)["status"] == "failed"
    assert cli.json("packs") == []


def test_test_pack_tests_the_served_version_again_and_records_it(cli: Cli) -> None:
    cli("register", EXAMPLES / "hello")
    assert cli.json("test", "--pack", "hello")["status"] == "passed"
    runs = cli.json("history", "hello")
    assert [(r["trigger_type"], r["outcome"]) for r in runs] == [
        ("manual", "tested"),
        ("register", "registered"),
    ]
    assert all(r["attune_execution_id"] is not None for r in runs)  # Attune's table too
    refused = cli("test", "--pack", "ghost", code=2)
    assert refused.stderr.strip() == "error: pack 'ghost' is not registered"
    assert "one of the arguments" in cli("test", code=2).stderr


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"needs {POSTGRES_ENV}")
def test_a_postgres_database_without_attunes_schema_is_refused_with_the_fix(
    tmp_path: Path, empty_postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(tmp_path, empty_postgres_url, capsys)
    refused = cli("packs", code=1)
    assert "has no Attune schema" in refused.stderr
    assert "database.create_attune_tables: true" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_db_upgrade_and_current(cli: Cli) -> None:
    assert cli.json("db", "upgrade") == {"revision": HEAD_REVISION}
    assert cli("db", "current").stdout.strip() == f"schema revision: {HEAD_REVISION}"


def test_help_documents_exit_codes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "attuned", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for line in ("0  success", "2  validation or usage error", "3  conflict", "4  tests failed"):
        assert line in out


def test_config_error_names_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "attuned.yaml"
    config.write_text("state_dir: ./var\ndatabse:\n  url: sqlite://\n")
    proc = subprocess.run(
        [sys.executable, "-m", "attuned", "packs", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{config}:2: databse: unknown field" in proc.stderr


def test_config_found_through_environment(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text(f"state_dir: {tmp_path / 'st'}\n")
    env = {**os.environ, "ATTUNED_CONFIG": str(config)}
    subprocess.run(
        [sys.executable, "-m", "attuned", "packs"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "st/attuned.db").is_file()


@pytest.mark.slow
def test_every_verb_end_to_end(cli: Cli) -> None:
    """Each verb the in-process tests cover, once as a real process: the console entry,
    the exit code and the streams as a shell sees them."""
    assert "is valid" in cli("validate", EXAMPLES / "hello", real=True).stdout
    assert json.loads(cli("register", EXAMPLES / "hello", "--json", real=True).stdout)["pack"]
    assert "already registered" in cli("register", EXAMPLES / "hello", code=3, real=True).stderr
    assert [p["ref"] for p in json.loads(cli("packs", "--json", real=True).stdout)] == ["hello"]
    assert "hello 1.0.0" in cli("show", "hello", real=True).stdout
    assert "tests: passed" in cli("test", "--pack", "hello", real=True).stdout
    assert len(json.loads(cli("history", "hello", "--json", real=True).stdout)) == 2
    assert "hello suspended" in cli("suspend", "hello", real=True).stdout
    assert "hello resumed" in cli("resume", "hello", real=True).stdout
    assert "pack.registered" in cli("events", real=True).stdout
    assert cli("reconcile", "--once", real=True).stdout.startswith("hello")
    assert "no running daemon" in cli("reconcile", code=5, real=True).stderr
    assert "error: the database failed" not in cli("unregister", "hello", real=True).stderr
    assert cli("db", "current", real=True).stdout.strip() == f"schema revision: {HEAD_REVISION}"
