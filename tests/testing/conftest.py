"""Helpers shared by the executor's tests: build a pack in tmp_path and run it for real."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from attuned.pack.manifest import PackManifest
from attuned.testing import ExecutorSettings, PackTestResult, TestExecutor


@dataclass(frozen=True)
class Pack:
    path: Path
    manifest: PackManifest


class MakePack(Protocol):
    def __call__(
        self,
        files: Mapping[str, str | bytes],
        runners: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        executable: tuple[str, ...] = (),
        testing: Mapping[str, Any] | None = None,
    ) -> Pack: ...


class RunPack(Protocol):
    def __call__(
        self,
        files: Mapping[str, str | bytes],
        runners: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        executable: tuple[str, ...] = (),
        testing: Mapping[str, Any] | None = None,
        settings: ExecutorSettings | None = None,
    ) -> PackTestResult: ...


FAST = ExecutorSettings(kill_grace=0.3, default_timeout=30)


@pytest.fixture
def fast_settings() -> ExecutorSettings:
    """Short kill grace so timeout tests stay quick."""
    return FAST


@pytest.fixture
def make_pack(tmp_path: Path) -> MakePack:
    """Write `files` (dedented) under a fresh pack dir and build its manifest.

    `runners` and `testing` become the manifest's testing section; `testing=None` with no
    runners leaves the section out entirely.
    """
    counter = iter(range(1000))

    def make(
        files: Mapping[str, str | bytes],
        runners: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        executable: tuple[str, ...] = (),
        testing: Mapping[str, Any] | None = None,
    ) -> Pack:
        root = tmp_path / f"pack{next(counter)}"
        for relative, content in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content).lstrip("\n"))
            if relative in executable:
                path.chmod(0o755)
        root.mkdir(exist_ok=True)
        data: dict[str, Any] = {
            "ref": "demo",
            "label": "Demo",
            "description": "a pack built by a test",
            "version": "1.2.3",
        }
        if runners is not None or testing is not None:
            data["testing"] = {**(testing or {}), "runners": dict(runners or {})}
        return Pack(root, PackManifest.model_validate(data))

    return make


@pytest.fixture
def run_pack(make_pack: MakePack) -> RunPack:
    def run(
        files: Mapping[str, str | bytes],
        runners: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        executable: tuple[str, ...] = (),
        testing: Mapping[str, Any] | None = None,
        settings: ExecutorSettings | None = None,
    ) -> PackTestResult:
        pack = make_pack(files, runners, executable=executable, testing=testing)
        return TestExecutor(settings or FAST).run(pack.path, pack.manifest)

    return run


def _is_dead(pid: int) -> bool:
    """Dead: no /proc entry, or a zombie waiting for an init that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def _process_is_gone(pid: int, within: float = 3.0) -> bool:
    """Dead now or within `within` seconds: a SIGKILL is delivered asynchronously, and a
    loaded machine may take a moment to act on it."""
    deadline = time.monotonic() + within
    while not _is_dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def process_is_gone() -> Callable[[int], bool]:
    return _process_is_gone


def live_processes_with(marker: str) -> list[int]:
    """Host pids, not zombies, whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmdline and state not in "ZX":
                found.append(int(entry.name))
    return found
