"""`attuned reconcile --once` logs at `--log-level`, whose documented default is `warning`
(docs/cli.md), as every verb but `run`: `log.level` in the config is the daemon's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.inprocess import run_attuned
from tests.conftest import EXAMPLES


@pytest.fixture
def config(tmp_path: Path) -> Path:
    packs = tmp_path / "packs.d"
    packs.mkdir()
    shutil.copytree(EXAMPLES / "hello", packs / "hello")
    path = tmp_path / "attuned.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"database:\n  url: sqlite:///{tmp_path / 'attuned.db'}\n"
        "log:\n  level: info\n"  # the daemon's: not the command's
        f"sources:\n  - {{name: local, path: {packs}}}\n"
    )
    return path


def levels(stderr: str) -> list[str]:
    return [json.loads(line)["level"] for line in stderr.splitlines() if line.startswith("{")]


def test_the_default_log_level_is_warning(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = run_attuned(["reconcile", "--once", "--config", config], capsys)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hello")
    assert "info" not in levels(done.stderr), done.stderr


def test_log_level_info_shows_the_passs_events(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_attuned(["reconcile", "--once", "--log-level", "info", "--config", config], capsys)

    assert done.returncode == 0, done.stderr
    assert "info" in levels(done.stderr)
    assert '"event": "pack.registered"' in done.stderr
