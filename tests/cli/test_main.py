"""The `attuned` command's start-up: `--help` and each verb import only what they use."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from attuned.cli.daemonlock import NO_DAEMON
from attuned.cli.main import CLOSED_PIPE, build_parser, verb_in
from attuned.cli.verbs import VERBS
from attuned.store.database import HEAD_REVISION
from tests.cli.inprocess import run_attuned
from tests.conftest import EXAMPLES


def outcome(done: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return done.returncode, done.stdout, done.stderr


HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "attuned.registry", "pygit2")
# what `status` and `trigger` must not import either: the config models (280 ms), the
# structured log (50 ms), the daemon and the test executor
NOT_FOR_STATUS = (
    *HEAVY,
    "pydantic_settings",
    "attuned.config",
    "structlog",
    "attuned.reconcile.daemon",
    "attuned.testing.executor",
)


def imported_after(*argv: str, cwd: Path) -> tuple[int, list[str]]:
    """Run `attuned ARGV` in a fresh interpreter; its exit code and the modules it loaded."""
    code = (
        "import json, sys\n"
        "from attuned.cli.main import main\n"
        "try:\n"
        f"    rc = main({list(argv)!r})\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code or 0\n"
        "print(json.dumps([rc, sorted(sys.modules)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    )
    rc, modules = json.loads(done.stdout.splitlines()[-1])
    return int(rc), modules


def test_help_lists_every_verb_and_imports_none_of_them(tmp_path: Path) -> None:
    rc, modules = imported_after("--help", cwd=tmp_path)

    assert rc == 0
    verbs = {f"attuned.cli.{module}" for module, _ in VERBS.values()}
    assert verbs & set(modules) == set()
    assert [m for m in (*NOT_FOR_STATUS, "yaml", "pydantic") if m in modules] == []
    shown = build_parser("").format_help()
    assert all(f"    {verb} " in shown for verb in VERBS)


def test_status_reads_the_status_file_with_neither_models_nor_database(tmp_path: Path) -> None:
    from attuned.report.status import DaemonStatus, Status, now, write_status

    (tmp_path / "attuned.yaml").write_text(f"state_dir: {tmp_path / 'state'}\n")
    daemon = DaemonStatus(version="1", pid=1, started_at=now(), phase="idle")
    write_status(tmp_path / "state/status.json", Status(daemon=daemon, updated_at=now()))

    rc, modules = imported_after("status", "--config", str(tmp_path / "attuned.yaml"), cwd=tmp_path)

    assert rc == 0
    assert [m for m in (*NOT_FOR_STATUS, "pydantic") if m in modules] == []
    assert "attuned.cli.status" in modules and "attuned.cli.packs" not in modules


def test_trigger_imports_neither_the_models_nor_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "attuned.yaml").write_text(
        f"state_dir: {tmp_path / 'state'}\nsources:\n  - {{name: local, path: packs.d}}\n"
    )

    rc, modules = imported_after("trigger", "local", "--config", "attuned.yaml", cwd=tmp_path)

    assert rc == NO_DAEMON  # none runs here
    assert [m for m in NOT_FOR_STATUS if m in modules] == []


@pytest.mark.parametrize("module", sorted({module for module, _ in VERBS.values()}))
def test_each_module_adds_exactly_the_verbs_the_table_gives_it(module: str) -> None:
    verb = next(v for v, (m, _) in VERBS.items() if m == module)
    parser = build_parser(verb)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # a verb's own parser says what runs it; a verb listed by name only does not
    real = {name for name, child in sub.choices.items() if child.get_default("run") is not None}
    assert real == {v for v, (m, _) in VERBS.items() if m == module}
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert all(helps[v] == text for v, (_, text) in VERBS.items())


def test_the_verb_is_the_first_word_that_is_not_an_option() -> None:
    assert verb_in(["--log-level", "debug", "history", "hello"]) == "history"
    assert verb_in(["--help"]) == ""
    assert verb_in([]) == ""
    assert verb_in(["nosuch"]) == "nosuch"


def test_an_unknown_verb_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from attuned.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["nosuch"])
    assert exited.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def attuned(*argv: str, cwd: Path, stdout: int | None = subprocess.PIPE) -> tuple[int, str, str]:
    """The real process: for what only one shows (a closed pipe)."""
    done = subprocess.run(
        [sys.executable, "-m", "attuned", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    return done.returncode, done.stdout or "", done.stderr


def sqlite_config(root: Path, busy_timeout: float = 30) -> Path:
    config = root / "attuned.yaml"
    config.write_text(
        f"state_dir: {root / 'state'}\n"
        f"database:\n  url: sqlite:///{root / 'attuned.db'}\n  busy_timeout: {busy_timeout}\n"
    )
    return config


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a byte is written (`| head -0`)
    try:
        rc, _, err = attuned(
            "validate", str(EXAMPLES / "hello"), "--json", cwd=tmp_path, stdout=write_end
        )
    finally:
        os.close(write_end)

    assert (rc, err) == (CLOSED_PIPE, "")


def test_a_locked_database_is_one_line_and_with_json_an_object_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sqlite_config(tmp_path, busy_timeout=0.2)
    assert run_attuned(["db", "upgrade", "--config", config], capsys).returncode == 0
    holder = sqlite3.connect(tmp_path / "attuned.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        rc, out, err = outcome(
            run_attuned(["suspend", "hello", "--config", config, "--json"], capsys)
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert rc == 1
    assert err.startswith("error: the database failed: ") and "database is locked" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert json.loads(out) == {"error": err.removeprefix("error: ").strip(), "exit_code": 1}


def test_history_of_a_pack_never_seen_is_a_usage_error_like_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(sqlite_config(tmp_path))

    history = outcome(run_attuned(["history", "nosuch", "--config", config], capsys))
    show = outcome(run_attuned(["show", "nosuch", "--config", config], capsys))

    assert history[0] == show[0] == 2
    assert history[2] == "error: pack 'nosuch' is not registered and has no test runs\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{config}", "db", "current"],
        ["db", "--config", "{config}", "current"],
        ["db", "current", "--config", "{config}"],
        ["--log-level", "info", "db", "current", "--config", "{config}"],
        ["db", "current", "--log-level", "error", "--config", "{config}"],
    ],
)
def test_common_options_work_before_or_after_the_verb_at_any_depth(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = sqlite_config(tmp_path)
    assert run_attuned(["db", "upgrade", "--config", config], capsys).returncode == 0

    rc, out, err = outcome(run_attuned([a.format(config=config) for a in argv], capsys))

    assert (rc, err) == (0, "")
    assert out.strip() == f"schema revision: {HEAD_REVISION}"


def test_json_before_the_verb_is_the_verbs_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(sqlite_config(tmp_path))

    rc, out, _ = outcome(run_attuned(["--json", "--config", config, "packs"], capsys))

    assert (rc, json.loads(out)) == (0, [])
