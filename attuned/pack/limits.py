"""Caps on one pack, whatever it arrives as: a folder, an archive or a git tree.

A pack is small text and scripts; a folder holding a 300 MiB file is a mistake (or an
attack on the disk), and every accepted byte is kept twice: the snapshot and the served
version directory. The caps are checked from `lstat` sizes before any content is read, and
again while bytes are copied, so a file that grows after it was measured stops at the cap.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from attuned.errors import Problem, ValidationFailed
from attuned.pack.content import IGNORED_NAMES, PackFile

MiB = 1 << 20


@dataclass(frozen=True)
class PackLimits:
    """Caps on one pack: a pack is small, a bomb is not. `max_ratio` and `ratio_floor`
    apply to archives only."""

    max_bytes: int = 256 * MiB
    max_files: int = 10_000
    max_file_bytes: int = 64 * MiB
    # unpacked bytes per archive byte: text packs compress 3-10x, a bomb 1000x and more;
    # archives that unpack to less than ratio_floor are never refused for their ratio
    max_ratio: float = 100.0
    ratio_floor: int = 8 * MiB

    def file_too_big(self, size: int) -> str | None:
        """Why one file of `size` bytes is refused, or None."""
        if size > self.max_file_bytes:
            return (
                f"{size} bytes ({_mib(size)}), more than the per-file cap of "
                f"{self.max_file_bytes} bytes ({_mib(self.max_file_bytes)}, "
                "pack_limits.max_file_mb)"
            )
        return None

    def too_many_files(self, count: int) -> str | None:
        if count > self.max_files:
            return f"more than {self.max_files} files (pack_limits.max_files); found {count} so far"
        return None

    def too_many_bytes(self, total: int) -> str | None:
        if total > self.max_bytes:
            return (
                f"more than {self.max_bytes} bytes ({_mib(self.max_bytes)}, "
                f"pack_limits.max_pack_mb) in all; {total} bytes so far"
            )
        return None


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB"


def refusal(path: Path, message: str) -> ValidationFailed:
    """The one-line refusal an operator sees in status: the file (or pack) and the cap."""
    return ValidationFailed([Problem(path, f"refused: {message}")])


def check_sizes(where: Path, sized: Iterable[tuple[Path, int]], limits: PackLimits) -> None:
    """The caps over (file, size) pairs as they are found, so nothing past a cap is looked at:
    a file too big is named; too many files or bytes name the pack (`where`)."""
    total = 0
    for count, (path, size) in enumerate(sized, 1):
        total += size
        big = limits.file_too_big(size)
        if big is not None:
            raise refusal(path, big)
        why = limits.too_many_files(count) or limits.too_many_bytes(total)
        if why is not None:
            raise refusal(where, why)


def check_tree(pack_dir: Path, limits: PackLimits) -> None:
    """Measure `pack_dir` with `lstat` alone (no file is opened); ValidationFailed at the
    first cap passed. Counts what `list_files` would list: regular files outside the names
    a pack never ships (`__pycache__`, `.git`, `*.pyc`)."""
    check_sizes(pack_dir, _regular_files(pack_dir), limits)


def _regular_files(pack_dir: Path) -> Iterator[tuple[Path, int]]:
    pending = [str(pack_dir)]
    while pending:
        try:
            with os.scandir(pending.pop()) as scan:
                entries = list(scan)
        except OSError:
            continue  # list_files reports what cannot be read, with the validation's words
        for entry in entries:
            if entry.name in IGNORED_NAMES or entry.name.endswith(".pyc"):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
            elif stat.S_ISREG(info.st_mode):  # a symlink, a FIFO: list_files refuses them
                yield Path(entry.path), info.st_size


def check_files(pack_dir: Path, files: list[PackFile], limits: PackLimits) -> None:
    """The caps on a listing already made (`Pack.files`): what `check_tree` measured may
    have grown before the pack was read."""
    why = limits.too_many_files(len(files))
    if why is not None:
        raise refusal(pack_dir, why)
    check_sizes(pack_dir, ((pack_dir / item.relpath, item.size) for item in files), limits)
