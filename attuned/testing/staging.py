"""A private, throw-away copy of the pack for one test run: tests may write anywhere in it
without touching the watched folder or the active store."""

from __future__ import annotations

import contextlib
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    root: Path

    @property
    def pack(self) -> Path:
        return self.root / "pack"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


@contextlib.contextmanager
def staged_pack(pack_dir: Path, *, prefix: str, parent: Path | None = None) -> Iterator[Stage]:
    """Copy `pack_dir` into a fresh private directory; remove it all on exit."""
    stage = Stage(Path(tempfile.mkdtemp(prefix=prefix, dir=parent)))
    try:
        shutil.copytree(pack_dir, stage.pack, symlinks=True, ignore=_special_files)
        for private in (stage.home, stage.tmp, stage.reports):
            private.mkdir(mode=0o700)
        yield stage
    finally:
        remove_tree(stage.root)


def _special_files(directory: str, names: list[str]) -> set[str]:
    """Skip FIFOs, sockets and devices: copying a FIFO would block forever."""
    skipped = set()
    for name in names:
        mode = (Path(directory) / name).lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skipped.add(name)
    return skipped


def remove_tree(root: Path) -> None:
    """rmtree that also removes what a test made read-only or unreadable."""

    def make_writable_and_retry(function: Callable[..., Any], name: str, _exc: Any) -> None:
        path = Path(name)
        with contextlib.suppress(OSError):
            path.parent.chmod(0o700)
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o700)
                shutil.rmtree(path, onerror=make_writable_and_retry)
            else:
                function(name)

    shutil.rmtree(root, onerror=make_writable_and_retry)
