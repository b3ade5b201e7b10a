"""runtime_deps: Attune's names map to commands on the tests' PATH; a missing one is named."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from attuned.envs.runtimes import missing_runtimes


def bin_dir(tmp_path: Path, *commands: str) -> str:
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for command in commands:
        path = directory / command
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return str(directory)


def test_attune_names_map_to_their_commands(tmp_path: Path) -> None:
    path = bin_dir(tmp_path, "sh", "node", "perl")
    found = missing_runtimes(
        ["shell", "nodejs", "node", "native", "perl", "Python3"],
        search_path=path,
        python=sys.executable,
    )
    assert found == []


def test_a_missing_runtime_is_named_with_the_command_and_path(tmp_path: Path) -> None:
    path = bin_dir(tmp_path, "sh")
    found = missing_runtimes(["shell", "nodejs", "java"], search_path=path, python=sys.executable)
    assert found == [
        f"runtime 'nodejs' (command 'node') is not installed on this host: not found on "
        f"PATH={path}",
        f"runtime 'java' (command 'java') is not installed on this host: not found on PATH={path}",
    ]


def test_python_is_the_test_interpreter(tmp_path: Path) -> None:
    path = bin_dir(tmp_path)
    assert missing_runtimes(["python"], search_path=path, python=sys.executable) == []
    [missing] = missing_runtimes(["python3"], search_path=path, python="/nonexistent/python9")
    assert missing == (
        "runtime 'python3' (testing.python '/nonexistent/python9') is not installed on this "
        "host: no such executable"
    )


def test_the_operator_maps_names_to_commands(tmp_path: Path) -> None:
    path = bin_dir(tmp_path, "sh")
    commands = {"nodejs": "/nonexistent/node18", "java": os.path.join(path, "sh"), "gpu": ""}
    found = missing_runtimes(
        ["nodejs", "java", "gpu"], search_path=path, python=sys.executable, commands=commands
    )
    assert found == [
        "runtime 'nodejs' (command '/nonexistent/node18', set in environments.runtimes) is not "
        "installed on this host: no such executable"
    ]


def test_a_non_executable_file_does_not_count(tmp_path: Path) -> None:
    path = bin_dir(tmp_path)
    (Path(path) / "node").write_text("not executable\n")
    assert len(missing_runtimes(["nodejs"], search_path=path, python=sys.executable)) == 1
