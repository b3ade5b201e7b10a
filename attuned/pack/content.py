"""A pack's files: refuse what cannot be safely copied, digest what is there.

Pack content is regular files and directories only; symlinks, hard links, devices and FIFOs
are refused, so nothing a pack ships can point outside its own directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from attuned import faults
from attuned.errors import Problem, ValidationFailed

_CHUNK = 1 << 20
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache"})


@dataclass(frozen=True)
class PackFile:
    relpath: str  # posix, relative to the pack root
    size: int
    executable: bool


def _ignored(name: str) -> bool:
    return name in IGNORED_NAMES or name.endswith(".pyc")


def _bad_name(pack_dir: Path, rel: str) -> Problem | None:
    """A name that would break the digest (not UTF-8) or forge lines in logs (control chars).

    The problem names the pack directory, with the name escaped, never the raw path.
    """
    try:
        rel.encode("utf-8")  # os.walk smuggles undecodable bytes in as lone surrogates
    except UnicodeEncodeError:
        return Problem(pack_dir, "a file name is not UTF-8 text; rename it")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel):
        return Problem(pack_dir, f"file name {rel!r} has a control character; rename it")
    return None


def list_files(pack_dir: Path) -> list[PackFile]:
    """Every regular file of the pack, sorted; ValidationFailed for anything else."""
    problems: list[Problem] = []
    files: list[PackFile] = []
    root = str(pack_dir)

    def unreadable(error: OSError) -> None:
        problems.append(Problem(Path(error.filename or root), f"cannot read: {error.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for name in [*dirnames, *sorted(f for f in filenames if not _ignored(f))]:
            full = os.path.join(dirpath, name)  # os.walk speaks strings
            rel = os.path.relpath(full, root)
            bad_name = _bad_name(pack_dir, rel)
            if bad_name is not None:
                if bad_name not in problems:
                    problems.append(bad_name)
                if name in dirnames:
                    dirnames.remove(name)  # one problem for the directory, not one per file
                continue
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(full)
                problems.append(Problem(Path(full), f"symbolic link (to {target!r}) refused"))
            elif stat.S_ISDIR(info.st_mode):
                continue
            elif not stat.S_ISREG(info.st_mode):
                problems.append(Problem(Path(full), "not a regular file (device, FIFO or socket)"))
            elif info.st_nlink > 1:
                problems.append(Problem(Path(full), "hard link refused"))
            else:
                files.append(
                    PackFile(
                        relpath=Path(rel).as_posix(),
                        size=info.st_size,
                        executable=bool(info.st_mode & stat.S_IXUSR),
                    )
                )
    if problems:
        raise ValidationFailed(problems)
    return files


def digest(pack_dir: Path, files: list[PackFile] | None = None) -> str:
    """sha256 over each file's path, executable bit and content: equal content, equal digest."""
    files = list_files(pack_dir) if files is None else files
    hasher = hashlib.sha256()
    for item in files:
        hasher.update(f"{item.relpath}\0{int(item.executable)}\0{item.size}\0".encode())
        with (pack_dir / item.relpath).open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
    return hasher.hexdigest()


def copy_files(pack_dir: Path, files: list[PackFile], target: Path) -> None:
    """Copy exactly the listed files (not whatever appeared since) into a new `target`."""
    target.mkdir(parents=True)
    for index, item in enumerate(files):
        if index == len(files) // 2:
            faults.point("mid_copy")
        dest = target / item.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pack_dir / item.relpath, dest)
        os.chmod(dest, 0o755 if item.executable else 0o644)
