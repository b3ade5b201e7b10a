"""The README's two commands stay true: CI runs the second, the first works as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands[1] in (REPO / ".ci/run").read_text().splitlines()


def test_first_command_registers_the_sample_pack_and_can_be_repeated(tmp_path: Path) -> None:
    install, _, attuned_part = quick_start_commands()[0].rpartition(" && ")
    assert ".venv/bin/pip install" in install and attuned_part.startswith(".venv/bin/attuned ")
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    args = attuned_part.split()[1:]
    env = {k: v for k, v in os.environ.items() if k != "ATTUNED_CONFIG"}
    for _ in range(2):  # a second run upgrades in place instead of failing
        subprocess.run(
            [sys.executable, "-m", "attuned", *args],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
        )
    listed = subprocess.run(
        [sys.executable, "-m", "attuned", "packs", "--json", "--config", "config/attuned.yaml"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert [p["ref"] for p in json.loads(listed)] == ["hello"]
    assert (tmp_path / "var/attuned.db").is_file() and (tmp_path / "var/packs/hello").is_symlink()
