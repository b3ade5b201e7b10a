"""A pack's files: refuse what cannot be safely copied, digest what is there.

Pack content is regular files and directories only; symlinks, hard links, devices and FIFOs
are refused, so nothing a pack ships can point outside its own directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from attuned import faults
from attuned.errors import Problem, ValidationFailed

_CHUNK = 1 << 20
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache"})
# a source opened for copying: never follow a symlink swapped in, never block on a FIFO
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # what _bad_name refuses


@dataclass(frozen=True)
class PackFile:
    relpath: str  # posix, relative to the pack root
    size: int
    executable: bool

    @property
    def mode(self) -> int:
        """The permission bits a copy gets: what Attune's workers need, nothing of the
        author's umask."""
        return 0o755 if self.executable else 0o644


def _ignored(name: str) -> bool:
    return name in IGNORED_NAMES or name.endswith(".pyc")


def _bad_name(pack_dir: Path, rel: str) -> Problem | None:
    """A name that would break the digest (not UTF-8) or forge lines in logs (control chars).

    The problem names the pack directory, with the name escaped, never the raw path.
    """
    try:
        rel.encode("utf-8")  # os.scandir smuggles undecodable bytes in as lone surrogates
    except UnicodeEncodeError:
        return Problem(pack_dir, "a file name is not UTF-8 text; rename it")
    if _CONTROL.search(rel):
        return Problem(pack_dir, f"file name {rel!r} has a control character; rename it")
    return None


def list_files(pack_dir: Path) -> list[PackFile]:
    """Every regular file of the pack, sorted; ValidationFailed for anything else.

    The order is the digest's: a directory's files (by name), then each subdirectory's
    (by name, depth first), as `os.walk` gave it; built from relative names, not
    `os.path.relpath` per file (a quarter of a small pack's validation).
    """
    problems: list[Problem] = []
    files: list[PackFile] = []
    root = str(pack_dir)
    pending = [""]  # relative directories still to list, the next one last
    while pending:
        rel_dir = pending.pop()
        where = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(where) as scan:
                entries = list(scan)
        except OSError as error:
            where = error.filename or where
            problems.append(Problem(Path(where), f"cannot read: {error.strerror}"))
            continue
        dirs: list[os.DirEntry[str]] = []
        plain: list[os.DirEntry[str]] = []
        for entry in entries:
            if _ignored(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # followed, as os.walk does: a link to one is a "dir"
            except OSError:
                is_dir = False
            (dirs if is_dir else plain).append(entry)
        dirs.sort(key=lambda e: e.name)
        plain.sort(key=lambda e: e.name)
        descend = []
        for entry in (*dirs, *plain):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            bad_name = _bad_name(pack_dir, rel)
            if bad_name is not None:
                if bad_name not in problems:
                    problems.append(bad_name)
                continue  # a directory: one problem for it, not one per file inside
            full = entry.path
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(full)
                problems.append(Problem(Path(full), f"symbolic link (to {target!r}) refused"))
            elif stat.S_ISDIR(info.st_mode):
                descend.append(rel)
            elif not stat.S_ISREG(info.st_mode):
                problems.append(Problem(Path(full), "not a regular file (device, FIFO or socket)"))
            elif info.st_nlink > 1:
                problems.append(Problem(Path(full), "hard link refused"))
            else:
                files.append(PackFile(rel, info.st_size, bool(info.st_mode & stat.S_IXUSR)))
        pending.extend(reversed(descend))
    if problems:
        raise ValidationFailed(problems)
    return files


def digest_header(item: PackFile) -> bytes:
    """What `digest` hashes before a file's bytes: its path, executable bit and size (a
    bounded copy elsewhere must spell it the same to produce the same digest)."""
    return f"{item.relpath}\0{int(item.executable)}\0{item.size}\0".encode()


def digest(
    pack_dir: Path, files: list[PackFile] | None = None, read: Mapping[str, bytes] | None = None
) -> str:
    """sha256 over each file's path, executable bit and content: equal content, equal digest.

    `read` maps `str(pack_dir / relpath)` to bytes already read (and validated): those are
    hashed instead of the file, so the digest names exactly the content that was checked,
    even if the file changed since.
    """
    files = list_files(pack_dir) if files is None else files
    read = read or {}
    hasher = hashlib.sha256()
    for item in files:
        hasher.update(digest_header(item))
        path = str(pack_dir / item.relpath)
        known = read.get(path)
        if known is not None:
            hasher.update(known)
            continue
        # no buffered file object (2x); a FIFO swapped in reads as empty, never blocks
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            ask = min(item.size + 1, _CHUNK)  # a short read is the end, as in copy_files
            while chunk := os.read(fd, ask):
                hasher.update(chunk)
                if len(chunk) < ask:
                    break
                ask = _CHUNK
        finally:
            os.close(fd)
    return hasher.hexdigest()


def copy_files(pack_dir: Path, files: list[PackFile], target: Path) -> str:
    """Copy exactly the listed files (not whatever appeared since) into a new `target`;
    returns the digest of the bytes written, so the copy is verified without reading it
    back. A source file that became a symlink or a FIFO since it was listed is not followed
    (OSError ELOOP, or EINVAL)."""
    target.mkdir(parents=True)
    source, dest = str(pack_dir), str(target)
    made = {""}
    hasher = hashlib.sha256()
    for index, item in enumerate(files):
        if index == len(files) // 2:
            faults.point("mid_copy")
        parent = item.relpath.rpartition("/")[0]
        if parent not in made:
            os.makedirs(f"{dest}/{parent}", exist_ok=True)
            made.add(parent)
        hasher.update(digest_header(item))
        _copy_one(f"{source}/{item.relpath}", f"{dest}/{item.relpath}", item, hasher)
    return hasher.hexdigest()


def _copy_one(source: str, dest: str, item: PackFile, hasher: hashlib._Hash) -> None:
    fd = os.open(source, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(22, "no longer a regular file", source)  # EINVAL
        out = os.open(dest, _CREATE_FLAGS, item.mode)
        try:
            os.fchmod(out, item.mode)  # whatever the umask
            # a byte more than listed: a short read is the end of the file, with no read
            # that returns nothing to say so (a small file is one read)
            ask = min(item.size + 1, _CHUNK)
            while chunk := os.read(fd, ask):
                hasher.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
                if len(chunk) < ask:
                    break
                ask = _CHUNK
        finally:
            os.close(out)
    finally:
        os.close(fd)
