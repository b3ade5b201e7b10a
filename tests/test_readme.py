"""The README's two commands stay true: CI runs the second, the first works as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.DOTALL)


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start_commands()
    assert len(commands) == 3  # the two commands, then the example drop
    assert commands[1] in (REPO / ".ci/run").read_text().splitlines()


@pytest.mark.e2e  # starts the daemon
def test_first_command_starts_the_daemon_and_the_example_drop_works(tmp_path: Path) -> None:
    install, _, attuned_part = quick_start_commands()[0].rpartition(" && ")
    assert ".venv/bin/pip install" in install and attuned_part.startswith(".venv/bin/attuned ")
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if k != "ATTUNED_CONFIG"}
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "attuned", *attuned_part.split()[1:]],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        status_file = tmp_path / "var/status.json"
        wait(
            lambda: (
                status_file.exists()
                and json.loads(status_file.read_text())["daemon"]["phase"] == "idle"
            )
        )
        started = [
            json.loads(line) for line in log.read_text().splitlines() if '"daemon.started"' in line
        ]
        assert started and f"drop packs into {tmp_path / 'packs.d'}" in started[0]["message"]
        drop, show = quick_start_commands()[2].splitlines()
        subprocess.run(drop, shell=True, cwd=tmp_path, check=True)  # noqa: S602 - README text
        wait(
            lambda: (
                json.loads(status_file.read_text())["packs"].get("hello", {}).get("state")
                == "active"
            )
        )
        shown = subprocess.run(
            [sys.executable, "-m", "attuned", *show.split()[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "hello" in shown and "active" in shown
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0


def wait(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")
