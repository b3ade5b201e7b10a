"""The bounded copy behind a snapshot: the listed files, no byte past their listed sizes.

A user may be editing the folder while it is copied, so the copy trusts nothing it did not
list: a file that grew, vanished or became a symlink or a FIFO is a change
(`SnapshotChanged`, read again later), or a refusal when it grew past the per-file cap. The
digest of the bytes written is returned, so the copy is verified without reading it back.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from attuned import faults
from attuned.errors import AttunedError
from attuned.pack.content import PackFile, digest_header
from attuned.pack.limits import PackLimits, refusal

_CHUNK = 1 << 20
# never follow a symlink swapped in, never block on a FIFO (as `content.copy_files`)
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class SnapshotChanged(AttunedError):
    """The pack's files changed while they were being copied; scan again later."""

    def __init__(self, source_dir: Path, reason: str) -> None:
        self.source_dir = source_dir
        self.reason = f"{reason}; it will be read again"
        super().__init__(f"{source_dir}: {self.reason}")


def copy_pack(source_dir: Path, files: list[PackFile], tmp: Path, limits: PackLimits) -> str:
    """Copy the listed files into `tmp`; returns the digest of the bytes written. A file
    that vanished, or was swapped for a symlink or a FIFO, is a change (SnapshotChanged)."""
    try:
        return _copy_listed(source_dir, files, tmp, limits)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise SnapshotChanged(
            source_dir, f"a file vanished while being copied ({exc.filename})"
        ) from None
    except OSError as exc:  # a symlink or a FIFO swapped in: never followed
        if exc.errno not in (errno.ELOOP, errno.EINVAL):
            raise
        raise SnapshotChanged(
            source_dir, f"a file changed while being copied ({exc.filename}: {exc.strerror})"
        ) from None


def _copy_listed(source_dir: Path, files: list[PackFile], target: Path, limits: PackLimits) -> str:
    """`content.copy_files`, but no file yields more bytes than were listed for it: one that
    grew since is refused when past the per-file cap (with the file named), else is a change
    (SnapshotChanged); nothing past the listed size is ever written. Returns the digest of
    the bytes written, as `content.digest` spells it."""
    target.mkdir(parents=True)
    made = {""}
    hasher = hashlib.sha256()
    for index, item in enumerate(files):
        if index == len(files) // 2:
            faults.point("mid_copy")
        parent = item.relpath.rpartition("/")[0]
        if parent not in made:
            os.makedirs(target / parent, exist_ok=True)
            made.add(parent)
        hasher.update(digest_header(item))
        source = source_dir / item.relpath
        if _copy_one(source, target / item.relpath, item, hasher):
            grown = os.lstat(source).st_size
            why = limits.file_too_big(grown)
            if why is not None:
                raise refusal(source, why)
            raise SnapshotChanged(
                source_dir,
                f"files changed while being copied ({item.relpath} grew to {grown} bytes)",
            )
    return hasher.hexdigest()


def _copy_one(source: Path, dest: Path, item: PackFile, hasher: hashlib._Hash) -> bool:
    """Copy at most `item.size` bytes; True when the file holds more than that."""
    fd = os.open(source, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file", str(source))
        out = os.open(dest, _CREATE_FLAGS, item.mode)
        try:
            os.fchmod(out, item.mode)  # whatever the umask
            left = item.size
            while left > 0 and (chunk := os.read(fd, min(left, _CHUNK))):
                hasher.update(chunk)
                left -= len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
        finally:
            os.close(out)
        # one byte past the listed size: a short file is caught by the digest, a long one here
        return bool(os.read(fd, 1))
    finally:
        os.close(fd)


def install(tmp: Path, final: Path) -> None:
    """Give the verified copy its name; a concurrent twin that won the race is as good.

    No fsync: a snapshot damaged by a power cut is caught by the digest check on reuse.
    """
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
