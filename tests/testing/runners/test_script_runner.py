"""`script`: which interpreter starts the entry point, and the arguments it gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from attuned.testing.runners.base import launch_argv

SHOW_SHELL = 'echo "$(readlink /proc/$$/exe)"\n'


def shell(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, **spec}


def interpreter(result) -> str:
    return Path((result.test_suites[0].stdout or "").splitlines()[0]).name


def test_dot_sh_runs_under_bin_sh(run_pack):
    result = run_pack({"tests/run.sh": SHOW_SHELL}, {"s": shell("tests/run.sh")})

    assert interpreter(result) == Path(os.path.realpath("/bin/sh")).name


def test_other_scripts_run_under_bash(run_pack):
    result = run_pack({"tests/run.bash": SHOW_SHELL}, {"s": shell("tests/run.bash")})

    assert interpreter(result) == "bash"


def test_executable_with_shebang_runs_by_its_shebang(run_pack):
    code = f"#!{sys.executable}\nimport sys\nprint(sys.executable)\n"

    result = run_pack(
        {"tests/run.py": code}, {"s": shell("tests/run.py")}, executable=("tests/run.py",)
    )

    assert (result.test_suites[0].stdout or "").strip() == sys.executable
    assert result.gate.passed  # exit code 0, one passed test


def test_shebang_is_honoured_without_the_executable_bit(run_pack):
    code = f"#!{sys.executable}\nimport sys\nprint(sys.executable)\n"

    result = run_pack({"tests/run.py": code}, {"s": shell("tests/run.py")})

    assert (result.test_suites[0].stdout or "").strip() == sys.executable


def test_arguments_are_passed_in_order(run_pack):
    result = run_pack(
        {"tests/run.sh": 'for a in "$@"; do echo "[$a]"; done\n'},
        {"s": shell("tests/run.sh", args=["--fast", "two words", ""])},
    )

    assert result.test_suites[0].stdout == "[--fast]\n[two words]\n[]\n"


def test_working_directory_is_the_pack_root(run_pack):
    result = run_pack(
        {"tests/deep/run.sh": "test -f pack-marker && echo found\n", "pack-marker": ""},
        {"s": shell("tests/deep/run.sh")},
    )

    assert result.test_suites[0].stdout == "found\n"


def test_shebang_with_one_argument_is_split_like_linux(tmp_path):
    script = tmp_path / "t"
    script.write_text("#!/usr/bin/env perl -w\nprint 1;\n")

    assert launch_argv(script) == ["/usr/bin/env", "perl -w", str(script)]
    script.chmod(0o755)
    assert launch_argv(script) == [str(script)]


def test_executable_without_shebang_still_gets_an_interpreter(tmp_path):
    script = tmp_path / "t.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)

    assert launch_argv(script) == ["/bin/sh", str(script)]
