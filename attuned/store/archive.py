"""Unpack a pack archive dropped in a watched folder, refusing anything that could escape it.

Members are written one by one here, never with `extractall`: only regular files and
directories, relative paths without `..`, and caps on the member count and on the bytes, both
as the headers declare them and as actually written, so a lying header stops at the cap too.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from attuned.errors import Problem, ValidationFailed
from attuned.pack.limits import PackLimits
from attuned.pack.manifest import MANIFEST_NAME

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
_CHUNK = 1 << 16
# what archivers add beside the pack: macOS resource forks, dot-files
_CLUTTER = frozenset({"__MACOSX"})
# errors meaning "this file is not a readable archive" (not "the disk is full")
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile)


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


class ArchiveRefused(Exception):
    """Why one archive (or one `member` of it) is not extracted; becomes ValidationFailed."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(f"{member}: {message}" if member else message)
        self.message = message
        self.member = member


@dataclass(frozen=True)
class _Member:
    """One archive entry as both formats can describe it."""

    name: str
    kind: str  # "file", "dir", or why it is refused
    size: int
    executable: bool


def extract_archive(archive: Path, target: Path, limits: PackLimits | None = None) -> Path:
    """Extract `archive` into the new or empty `target` (removed on failure); return the pack root.

    The pack root is `target` when `pack.yaml` is at the top of the archive, else the one
    top-level directory. ValidationFailed names the archive and the offending member.
    """
    limits = limits or PackLimits()
    target.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, target, limits)
        else:
            _extract_tar(archive, target, limits)
        return _pack_root(target)
    except ArchiveRefused as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ValidationFailed([Problem(archive, exc.message, field=exc.member)]) from None
    except _CORRUPT as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ValidationFailed([Problem(archive, f"not a readable archive: {exc}")]) from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _extract_tar(archive: Path, target: Path, limits: PackLimits) -> None:
    # stream mode: a member's data is read once, in order, and never seeked back to
    with tarfile.open(archive, mode="r|*") as tar:
        writer = _Writer(target, limits, archive.stat().st_size)
        for info in tar:
            member = _tar_member(info)
            relpath = writer.admit(member)
            _data_filter(info, target)
            writer.write(member, relpath, partial(tar.extractfile, info))


def _tar_member(info: tarfile.TarInfo) -> _Member:
    if info.issym():
        kind = f"symbolic link (to {info.linkname!r}) refused"
    elif info.islnk():
        kind = f"hard link (to {info.linkname!r}) refused"
    elif info.ischr() or info.isblk():
        kind = "device refused"
    elif info.isfifo():
        kind = "FIFO refused"
    elif info.isdir():
        kind = "dir"
    elif info.isreg():
        kind = "file"
    else:
        kind = f"unsupported member type {info.type!r} refused"
    return _Member(info.name, kind, info.size, bool(info.mode & 0o111))


def _data_filter(info: tarfile.TarInfo, target: Path) -> None:
    """Python's own "data" extraction filter, as a second opinion after ours."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:  # pragma: no cover - Python < 3.11.4
        return
    try:
        data_filter(info, str(target))
    except tarfile.FilterError as exc:
        raise ArchiveRefused(f"refused by tarfile's data filter: {exc}", info.name) from None


def _extract_zip(archive: Path, target: Path, limits: PackLimits) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        # the central directory lists everything up front: refuse before writing anything
        writer = _Writer(target, limits, archive.stat().st_size)
        writer.check_totals(len(infos), sum(i.file_size for i in infos))
        for info in infos:
            member = _zip_member(info)
            writer.write(member, writer.admit(member), partial(zf.open, info))


def _zip_member(info: zipfile.ZipInfo) -> _Member:
    mode = info.external_attr >> 16  # the Unix mode, when a Unix zipper wrote one
    file_type = stat.S_IFMT(mode)
    if info.flag_bits & 0x1:
        kind = "encrypted member refused"
    elif info.is_dir():
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symbolic link refused"
    elif file_type in (0, stat.S_IFREG):
        kind = "file"
    elif stat.S_ISFIFO(mode):
        kind = "FIFO refused"
    else:
        kind = "device or other special file refused"
    return _Member(info.filename, kind, info.file_size, bool(mode & 0o111))


class _Writer:
    """Writes members under `target`, counting members and bytes against the limits."""

    def __init__(self, target: Path, limits: PackLimits, archive_size: int) -> None:
        self.target = target
        self.limits = limits
        # whichever is lower: the absolute cap, or what the archive's size can honestly hold
        self.cap = min(
            limits.max_bytes, max(limits.ratio_floor, int(archive_size * limits.max_ratio))
        )
        self.members = 0
        self.declared = 0
        self.written = 0
        self.files: set[PurePosixPath] = set()

    def check_totals(self, members: int, declared: int) -> None:
        if members > self.limits.max_files:
            raise ArchiveRefused(f"more than {self.limits.max_files} members ({members})")
        if declared > self.limits.max_bytes:
            raise ArchiveRefused(
                f"declares {declared} bytes, more than the cap of {self.limits.max_bytes}"
            )
        if declared > self.cap:
            raise ArchiveRefused(
                f"declares {declared} bytes from a much smaller archive (more than "
                f"{self.limits.max_ratio:g} times its size): refused as a decompression bomb"
            )

    def admit(self, member: _Member) -> PurePosixPath | None:
        """Check name, type and running totals before anything is written."""
        relpath = safe_member_path(member.name)
        if member.kind not in ("file", "dir"):
            raise ArchiveRefused(member.kind, member.name)
        self.members += 1
        self.declared += member.size if member.kind == "file" else 0
        self.check_totals(self.members, self.declared)
        too_big = self.limits.file_too_big(member.size) if member.kind == "file" else None
        if too_big is not None:
            raise ArchiveRefused(f"declares {too_big}", member.name)
        return relpath

    def write(
        self,
        member: _Member,
        relpath: PurePosixPath | None,
        open_data: Callable[[], IO[bytes] | None],
    ) -> None:
        if relpath is None:  # "./": the archive's root
            return
        dest = self.target.joinpath(*relpath.parts)
        try:
            if member.kind == "dir":
                dest.mkdir(parents=True, exist_ok=True)
                return
            if relpath in self.files:
                raise ArchiveRefused("appears twice in the archive", member.name)
            self.files.add(relpath)
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.written += self._write(_open_member(open_data, member.name), dest, member)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise ArchiveRefused(
                "conflicts with another member of the archive", member.name
            ) from None

    def _write(self, source: IO[bytes], dest: Path, member: _Member) -> int:
        budget = self.cap - self.written
        why = "content exceeds the archive's size cap"
        if self.limits.max_file_bytes < budget:
            budget = self.limits.max_file_bytes
            why = f"content exceeds the per-file cap of {budget} bytes (pack_limits.max_file_mb)"
        mode = 0o755 if member.executable else 0o644
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with source, os.fdopen(fd, "wb") as out:
            written = copy_capped(source, out, budget, member.name, why)
        os.chmod(dest, mode)  # the umask must not decide what a pack may execute
        return written


def _open_member(open_data: Callable[[], IO[bytes] | None], name: str) -> IO[bytes]:
    try:
        source = open_data()
    except NotImplementedError as exc:  # zip: a compression method Python lacks
        raise ArchiveRefused(f"cannot read this member: {exc}", name) from None
    if source is None:
        raise ArchiveRefused("has no data to read", name)
    return source


def copy_capped(
    source: IO[bytes],
    out: IO[bytes],
    budget: int,
    member: str,
    why: str = "content exceeds the archive's size cap",
) -> int:
    """Copy to EOF but stop once more than `budget` bytes came out, whatever the header said
    (`budget`: what is left of the archive's cap, or the per-file cap when lower)."""
    written = 0
    while chunk := source.read(min(_CHUNK, budget - written + 1)):
        written += len(chunk)
        if written > budget:
            raise ArchiveRefused(why, member)
        out.write(chunk)
    return written


def _pack_root(target: Path) -> Path:
    if (target / MANIFEST_NAME).exists():
        return target
    tops = [p for p in target.iterdir() if p.name not in _CLUTTER and not p.name.startswith(".")]
    if len(tops) == 1 and tops[0].is_dir():
        return tops[0]
    found = ", ".join(sorted(p.name for p in tops)) or "nothing"
    raise ArchiveRefused(
        f"no {MANIFEST_NAME} at the top and not exactly one top-level directory (found: {found})"
    )


def safe_member_path(name: str) -> PurePosixPath | None:
    """The member's path relative to the archive root (None for the root); refuses escapes."""
    if not name or "\0" in name:
        raise ArchiveRefused("empty member name", name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveRefused("member name is not UTF-8", name) from None
    if "\\" in name:
        raise ArchiveRefused("backslash in member name refused (a Windows path?)", name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise ArchiveRefused("absolute path refused", name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused("'..' in member path refused", name)
    return PurePosixPath(*parts) if parts else None
