"""The post-receive hook finds attuned without `git config attuned.bin` where it can, and
says how to set it where it cannot; it never fails the push."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "deploy/git-hooks/post-receive"
SYSTEM_PATH = "/usr/bin:/bin"  # no attuned here (nor in /usr/local/bin on a test machine)


def bare_repo(tmp_path: Path, **config: str) -> Path:
    bare = tmp_path / "packs.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    for key, value in config.items():
        subprocess.run(["git", "-C", str(bare), "config", f"attuned.{key}", value], check=True)
    return bare


def run_hook(bare: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(bare.parent), "GIT_DIR": str(bare)}
    return subprocess.run(
        ["sh", str(HOOK)],
        input="0000 1111 refs/heads/main\n",
        capture_output=True,
        text=True,
        cwd=bare,
        env=env,
        check=False,
        timeout=60,
    )


def test_without_attuned_bin_the_hook_uses_attuned_on_the_path(tmp_path: Path) -> None:
    config = tmp_path / "attuned.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "sources: [{name: packs, type: git, url: 'https://example.com/packs.git', ref: {branch: main}}]\n"
    )
    bare = bare_repo(tmp_path, source="packs", config=str(config))
    venv_bin = Path(sys.executable).parent
    done = run_hook(bare, f"{venv_bin}:{SYSTEM_PATH}")
    assert done.returncode == 0
    # attuned itself ran: it found no daemon on that state directory
    assert "no daemon runs" in done.stderr, done.stderr


def test_with_no_attuned_anywhere_the_hook_says_how_to_set_it(tmp_path: Path) -> None:
    if any(Path(p, "attuned").exists() for p in ("/usr/local/bin", "/opt/attuned/bin")):
        import pytest

        pytest.skip("attuned is installed system-wide on this machine")
    bare = bare_repo(tmp_path, source="packs")
    done = run_hook(bare, SYSTEM_PATH)
    assert done.returncode == 0  # the push never fails
    assert "git config attuned.bin /path/to/venv/bin/attuned" in done.stderr
    assert "not found" not in done.stderr  # not the shell's bare complaint


def test_attuned_bin_wins_over_the_path(tmp_path: Path) -> None:
    bare = bare_repo(tmp_path, source="packs", bin=str(tmp_path / "nowhere/attuned"))
    done = run_hook(bare, f"{Path(sys.executable).parent}:{SYSTEM_PATH}")
    assert done.returncode == 0
    assert "nowhere/attuned" in done.stderr
    assert os.access(HOOK, os.X_OK)
