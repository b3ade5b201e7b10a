"""The pack store on disk: immutable versioned directories behind an atomically swapped symlink.

```
packs_dir/
  hello -> .versions/hello-1.0.0-3f2a9c0d1e2b4a5f     (what Attune reads)
  .versions/hello-1.0.0-3f2a9c0d1e2b4a5f/...           (one per content digest)
  .staging/                                           (copies in progress; never read)
```
A version directory is complete before it gets its final name (copy into staging, then
rename), and a pack becomes visible with one `rename(2)` of a symlink, as git-sync does. The
database row names the digest, so after a crash `repair()` can make disk agree with it.

Where the file system can (Btrfs, XFS, bcachefs, ZFS 2.2), files are cloned (`FICLONE`)
rather than copied: the version directory shares its blocks with the snapshot, and a write to
either one copies the block touched, so the drift check still finds a served file edited and
restores it from an intact snapshot. Hard links would share the inode instead: an edit would
reach the snapshot too, and `list_files` refuses hard links in every pack it reads. Elsewhere
(ext4) the files are copied.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from attuned import faults
from attuned.errors import StoreError
from attuned.pack.content import PackFile, copy_files, digest, list_files
from attuned.pack.versions import is_version

VERSIONS = ".versions"
STAGING = ".staging"
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int), the same on every architecture
# what a clone fails with where copying would work: the file system cannot (then it is not
# tried again), or not between these two files (other devices, ...)
_CANNOT_CLONE = frozenset({errno.EOPNOTSUPP, errno.ENOTTY})
_NO_CLONE = _CANNOT_CLONE | {errno.EXDEV, errno.EINVAL, errno.EPERM}


def version_dirname(ref: str, version: str, pack_digest: str) -> str:
    return f"{ref}-{version}-{pack_digest[:16]}"


_SCRATCH_OWNER = re.compile(r"-p(\d+)-[0-9a-f]{32}$")


def _scratch(prefix: str) -> str:
    """A temporary name that says which process made it: `<prefix>-p<pid>-<uuid>`."""
    return f"{prefix}-p{os.getpid()}-{uuid.uuid4().hex}"


def _owner_is_dead(name: str) -> bool:
    """True when `name` is a scratch name whose process is gone: nobody will finish it.

    Names without an owner (made before owners were recorded) are left to the age rule.
    """
    match = _SCRATCH_OWNER.search(name)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_version_dir_of(name: str, ref: str) -> bool:
    """Whether `name` is `<ref>-<version>-<digest16>` for exactly this ref."""
    if not name.startswith(f"{ref}-"):
        return False
    version, _, short_digest = name[len(ref) + 1 :].rpartition("-")
    return len(short_digest) == 16 and is_version(version)


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def _names(directory: Path) -> list[str]:
    """The names in `directory` (none when it is missing): no Path a name, 10,000 of them."""
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _clone_files(source: Path, files: list[PackFile], target: Path) -> str:
    """Clone each file (shared blocks, a new inode of mode `PackFile.mode`), then digest the
    clones: a clone is atomic per file, and its digest is what the version is named by."""
    target.mkdir(parents=True)
    for item in files:
        dest = target / item.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = os.open(source / item.relpath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, item.mode)
            try:
                os.fchmod(out, item.mode)  # whatever the umask
                fcntl.ioctl(out, FICLONE, src)
            finally:
                os.close(out)
        finally:
            os.close(src)
    return digest(target, files)


class PackStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = root / VERSIONS
        self.staging = root / STAGING
        self._real_root: str | None = None  # the root with symlinks resolved, once it exists
        self._swap_unsynced = False  # a link swapped with activate(sync=False), not fsynced
        self.clones = True  # False once the file system refused a clone: copy from then on

    def ensure(self) -> None:
        self.versions.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def link(self, ref: str) -> Path:
        return self.root / ref

    def active_dir(self, ref: str) -> Path | None:
        """The version directory `ref` points at (resolved), or None when it is not active."""
        found = self.active_path(ref)
        return None if found is None else Path(found)

    def active_path(self, ref: str) -> str | None:
        """`active_dir` as text: one readlink, not Path.resolve() (an lstat per component),
        and no Path objects: the drift check asks this of every pack on every full pass."""
        link = os.path.join(self.root, ref)
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        except OSError:  # EINVAL: there, but not a symlink
            if os.path.exists(link):
                raise StoreError(
                    f"{link} is not a symlink managed by attuned; move it away"
                ) from None
            return None
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        return os.path.normpath(os.path.join(self._real_root, target))

    def prepare(self, ref: str, version: str, source: Path, files: list[PackFile]) -> Path:
        """Copy `files` from `source` into a complete version directory; return it.

        Identical content already in the store is reused. The caller checks the returned
        directory's digest (the source may have changed while it was copied).
        """
        return self.stage(ref, version, source, files)[0]

    def stage(
        self, ref: str, version: str, source: Path, files: list[PackFile]
    ) -> tuple[Path, str]:
        """`prepare()`, and the digest of what the directory holds: of the bytes written for
        a new copy (so it is not read back), of the clones (read back: nothing was written),
        of its files for a directory reused."""
        self.ensure()
        tmp = self.staging / _scratch(ref)
        written = self._fill(source, files, tmp)
        final = self.versions / version_dirname(ref, version, written)
        if final.is_dir():
            shutil.rmtree(tmp)
            return final, digest(final, files)
        os.replace(tmp, final)
        self._sync_versions()
        return final, written

    def _fill(self, source: Path, files: list[PackFile], target: Path) -> str:
        """Put `files` of `source` into the new `target`, cloned where the file system can,
        else copied; returns the digest of what `target` holds."""
        if self.clones:
            try:
                return _clone_files(source, files, target)
            except OSError as exc:
                if exc.errno not in _NO_CLONE:
                    raise
                self.clones = exc.errno not in _CANNOT_CLONE
                shutil.rmtree(target, ignore_errors=True)
        return copy_files(source, files, target)

    def _sync_versions(self) -> None:
        """fsync `.versions` (the new directory must be on disk before the database names
        it), and the root too when a link swap waits for it: back to back, which costs one
        journal commit where the file system has one journal for both (ext4, XFS)."""
        _fsync_dir(self.versions)
        self.sync()

    def sync(self) -> None:
        """fsync the root if a link was swapped with `activate(sync=False)` since."""
        if self._swap_unsynced:
            self._swap_unsynced = False
            _fsync_dir(self.root)

    def activate(self, ref: str, version_dir: Path, *, sync: bool = True) -> None:
        """Point `ref` at `version_dir` with one atomic rename.

        `sync=False` leaves the fsync of the root to the next `stage()` (or `sync()`): for a
        registration, whose committed row names the digest, so that `repair()` relinks the
        pack if a power cut loses the swap; registering many packs then costs one journal
        commit a pack instead of two."""
        if self.link(ref).exists() and not self.link(ref).is_symlink():
            raise StoreError(f"{self.link(ref)} is not a symlink managed by attuned; move it away")
        os.utime(version_dir)  # activation time orders versions for retire()
        for attempt in range(3):
            tmp_link = self.root / _scratch(f".{ref}.link")
            os.symlink(Path(VERSIONS) / version_dir.name, tmp_link)
            faults.point("mid_swap")
            try:
                os.replace(tmp_link, self.link(ref))
                break
            except FileNotFoundError:  # collected as a dead process's (another pid namespace)
                if attempt == 2:
                    raise
        if sync:
            _fsync_dir(self.root)
        else:
            self._swap_unsynced = True

    def discard(self, version_dir: Path) -> None:
        """Remove a prepared directory unless some pack is serving it."""
        if str(version_dir.resolve()) in self._active_dirs():
            return
        shutil.rmtree(version_dir, ignore_errors=True)

    def restore(self, ref: str, version: str, snapshot: Path) -> Path:
        """Serve a fresh copy of `snapshot` after the served files drifted from it.

        The drifted directory has the canonical name, so the copy is served under a temporary
        name first; readers only ever see complete trees.
        """
        self.ensure()
        files = list_files(snapshot)
        canonical = self.versions / version_dirname(ref, version, digest(snapshot, files))
        interim = self.versions / _scratch(f".{canonical.name}.restore")
        tmp = self.staging / _scratch(ref)
        self._fill(snapshot, files, tmp)
        os.replace(tmp, interim)
        self.activate(ref, interim)
        shutil.rmtree(canonical, ignore_errors=True)
        tmp = self.staging / _scratch(ref)
        self._fill(snapshot, files, tmp)
        os.replace(tmp, canonical)
        self.activate(ref, canonical)
        shutil.rmtree(interim, ignore_errors=True)
        return canonical

    def retire(self, ref: str, keep: int) -> list[Path]:
        """Keep the `keep` newest version directories of `ref` (the served one counts)."""
        served = self.active_dir(ref)
        mine = sorted(
            (d for d in _entries(self.versions) if _is_version_dir_of(d.name, ref)),
            key=lambda d: d.stat().st_mtime_ns,
            reverse=True,
        )
        removed = []
        kept = 1 if served is not None else 0
        for directory in mine:
            if directory.resolve() == served:
                continue
            if kept < keep:
                kept += 1
                continue
            faults.point("mid_gc")
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
        return removed

    def remove(self, ref: str) -> None:
        """Stop serving `ref` (symlink first, so readers never see a half-deleted tree)."""
        current = self.active_dir(ref)
        if self.link(ref).is_symlink():
            self.link(ref).unlink()
            _fsync_dir(self.root)
        if current is not None:
            self.discard(current)

    def _active_dirs(self) -> set[str]:
        """Every served version directory, as `active_path` spells it. Text, not Paths:
        every start and every removal asks, and 10,000 Path objects cost 0.5 s."""
        real = os.path.realpath(self.root)
        try:
            with os.scandir(self.root) as entries:
                return {
                    os.path.normpath(os.path.join(real, os.readlink(entry.path)))
                    for entry in entries
                    if not entry.name.startswith(".") and entry.is_symlink()
                }
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def _real_version_dir(self, name: str) -> str:
        """`versions/<name>` as `_active_dirs` and `active_path` spell it: one realpath of
        the root, not Path.resolve() (an lstat per component) for each of 10,000 packs."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        return os.path.normpath(os.path.join(self._real_root, VERSIONS, name))

    def collect_garbage(self, min_age: float = 0.0) -> list[Path]:
        """Delete version directories nothing points at and leftover staging copies.

        Entries changed less than `min_age` seconds ago are kept: a concurrent registration
        may have prepared them and not yet swapped its link. Scratch entries of a process that
        is gone (killed between making and renaming them) go at once, whatever their age.
        """
        removed: list[Path] = []
        active = self._active_dirs()
        horizon = time.time() - min_age
        candidates = [
            *(
                self.versions / name
                for name in _names(self.versions)
                if self._real_version_dir(name) not in active
            ),
            *_entries(self.staging),
            *self.root.glob(".*.link-*"),
        ]
        for entry in candidates:
            if entry.lstat().st_mtime > horizon and not _owner_is_dead(entry.name):
                continue
            faults.point("mid_gc")
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        return removed

    def repair(self, expected: dict[str, tuple[str, str]]) -> list[str]:
        """Make links agree with the database: `expected` maps ref -> (version, digest).

        Returns what was fixed. A ref whose version directory is missing cannot be fixed
        here and is reported as `missing:<ref>`.
        """
        fixed: list[str] = []
        if not self.root.is_dir():
            return [f"missing:{ref}" for ref in expected]
        with os.scandir(self.root) as entries:
            strays = [
                entry.path
                for entry in entries
                if not entry.name.startswith(".")
                and entry.name not in expected
                and entry.is_symlink()
            ]
        for stray in strays:
            os.unlink(stray)
            fixed.append(f"unlinked:{os.path.basename(stray)}")
        for ref, (version, pack_digest) in expected.items():
            name = version_dirname(ref, version, pack_digest)
            want = self._real_version_dir(name)
            if not os.path.isdir(want):
                fixed.append(f"missing:{ref}")
                continue
            if self.active_path(ref) != want:
                self.activate(ref, self.versions / name)
                fixed.append(f"relinked:{ref}")
        return fixed
