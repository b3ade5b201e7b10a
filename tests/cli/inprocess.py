"""Run `attuned` in this process, through `main(argv)` exactly as the console script calls it:
the same parsing, dispatch, exit codes and output, without a 0.3-1 s interpreter start per
call. End-to-end tests that need a real process (pipes, signals, import sets) stay
subprocesses; see `subprocess_attuned`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from attuned.cli.main import main


def run_attuned(
    argv: Sequence[str | Path], capsys: pytest.CaptureFixture[str], *, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`attuned ARGV` in-process: its exit code, stdout and stderr, as a subprocess gives them."""
    args = [str(a) for a in argv]
    capsys.readouterr()
    logging = structlog.get_config()  # main() points the log at this test's captured stderr
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        code = main(args)
    except SystemExit as exc:  # argparse: --help, a usage error
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    finally:
        os.chdir(before)
        structlog.configure(**logging)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["attuned", *args], code, out, err)


def subprocess_attuned(
    argv: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m attuned ARGV`, a real process (without $ATTUNED_CONFIG unless `env` says)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "ATTUNED_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "attuned", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )
