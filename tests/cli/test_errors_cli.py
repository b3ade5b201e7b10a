"""Errors of the store and of environments reach the operator as one line with an exit code,
not a traceback: they derive from AttunedError like every other error an operator sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.inprocess import run_attuned
from tests.conftest import EXAMPLES


def test_a_hand_made_directory_in_the_store_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "attuned.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"database:\n  url: sqlite:///{tmp_path / 'attuned.db'}\n"
        "testing: {sandbox: none}\n"
    )
    (tmp_path / "state/packs/hello").mkdir(parents=True)  # not a link the store made

    done = run_attuned(
        ["register", str(EXAMPLES / "hello"), "--skip-tests", "--config", config], capsys
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert line.startswith("error: ") and "not a symlink managed by attuned" in line
