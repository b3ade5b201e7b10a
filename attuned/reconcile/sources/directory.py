"""A watched folder as a source: each pack directory or archive in it is a wanted pack.

A folder that is missing or cannot be listed is *unreadable*, never empty: an unmounted disk
must not look like "the operator deleted every pack", or the planner would prune them all.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from attuned.errors import Problem, ValidationFailed
from attuned.pack.content import IGNORED_NAMES
from attuned.pack.limits import PackLimits
from attuned.pack.manifest import MANIFEST_NAME
from attuned.reconcile.model import Candidate, InvalidCandidate, SourceState
from attuned.reconcile.snapshot_copy import SnapshotChanged
from attuned.reconcile.snapshots import Outcome, Snapshot, SnapshotStore
from attuned.reconcile.sources.base import ScanResult
from attuned.reconcile.sources.entries import candidate_of, problems_of, rebased, ref_hint
from attuned.store.archive import extract_archive, is_archive

IGNORED_SUFFIXES = (".tmp", ".part")
# the entry the watcher names when the watched folder itself was deleted or moved away
FOLDER_ITSELF = "."
STALE_SCRATCH_SECONDS = 3600  # younger extractions may belong to a scan still running
# what reading one entry can fail with, short of a bug
_ENTRY_ERRORS = (ValidationFailed, SnapshotChanged, OSError, UnicodeError)

Result = Candidate | InvalidCandidate
_COUNTED = {
    Outcome.MADE: "snapshots_made",
    Outcome.REUSED: "snapshots_reused",
    Outcome.CACHED: "cache_hits",
}


def ignored(name: str) -> bool:
    """Names a pack is dropped under before its final rename: `cp -r x .x && mv .x x`."""
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


class Unreadable(Exception):
    """The folder itself cannot be read this pass: know nothing, prune nothing."""


@dataclass(frozen=True)
class _ArchiveSeen:
    # device, inode, size, mtime_ns, ctime_ns of the archive file, and the caps it met
    key: tuple[int | PackLimits, ...]
    result: Result


class DirectorySource:
    """Every immediate child of `path` with a pack.yaml, and every pack archive dropped in it."""

    def __init__(
        self,
        name: str,
        path: Path,
        snapshots: SnapshotStore,
        *,
        prune: bool = True,
        archive_limits: PackLimits | None = None,
        work_dir: Path,
    ) -> None:
        self.name = name
        self.path = path
        self.prune = prune
        self.archive_limits = archive_limits  # None: the snapshot store's, as configured
        self.work_dir = work_dir
        self._snapshots = snapshots
        self._lock = threading.Lock()
        self._archives: dict[str, _ArchiveSeen] = {}
        self._refs: dict[str, str] = {}  # entry -> ref it last had: a hint when it breaks
        self._dirs: set[str] = set()
        self._held: tuple[int, int] | None = None  # (device, inode) when it last had entries
        self._replaced = False  # deleted or moved away since it last had entries
        # (device, inode) of the folder as the last readable scan found it: a partial pass
        # reads only what inotify named, which says nothing about the folder itself
        self._root: tuple[int, int] | None = None
        self._scratch_swept = False
        self._bases = {Path(os.path.abspath(path)), Path(os.path.realpath(path))}
        # entry -> what the last scan found there (None: not a pack); only a readable full
        # scan sets it, and a scan of a few entries starts from it
        self._found: dict[str, Result | None] | None = None

    def scan(self, only: set[str] | None = None) -> ScanResult:
        """Snapshot every entry now, or with `only` just those entries (inotify said they
        changed) and the rest as the last full scan found them; never raises for bad input
        (it becomes InvalidCandidate)."""
        with self._lock:
            if only is not None and FOLDER_ITSELF in only:
                self._replaced = True  # as folder_lost(): the watcher's event, queued
            elif only is not None and self._found is not None and not self._root_moved():
                return self._rescan(only)
            # a full pass, or the folder itself is gone, replaced or unreadable since the
            # last scan: read it whole (a missing folder is an error that prunes nothing)
            try:
                names = self._list()
            except Unreadable as exc:
                self._found = None
                state = SourceState(self.name, readable=False, prune=self.prune, error=str(exc))
                return ScanResult(state=state)
            return self._scan(names)

    def folder_lost(self) -> None:
        """The watcher saw the folder itself deleted or moved away: a folder found at the
        path from now on is another one, even with the same inode number."""
        with self._lock:
            self._replaced = True

    def root_moved(self) -> bool:
        """Whether the folder is no longer the one the last scan read (deleted, moved away,
        replaced, unreadable) or is back after being so: cheap (one stat), so the daemon asks
        it every tick and reads the folder at once, instead of at the next full pass."""
        with self._lock:
            return self._root_moved()

    def _root_moved(self) -> bool:
        return folder_identity(self.path) != self._root

    def entry_for(self, changed: Path) -> str | None:
        """The entry a filesystem event belongs to (the key to debounce on), or None if ignored."""
        absolute = Path(os.path.abspath(changed))
        for base in self._bases:
            if not absolute.is_relative_to(base):
                continue
            parts = absolute.relative_to(base).parts
            if not parts or ignored(parts[0]) or IGNORED_NAMES.intersection(parts[1:]):
                return None
            return parts[0]
        return None

    def _list(self) -> list[str]:
        self._root = None  # until the folder is read: an error below leaves it unknown
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise Unreadable(f"{self.path} does not exist") from None
        except OSError as exc:
            raise Unreadable(f"cannot stat {self.path}: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise Unreadable(f"{self.path} is not a directory")
        try:
            names = sorted(n for n in os.listdir(self.path) if not ignored(n))
        except OSError as exc:
            raise Unreadable(f"cannot list {self.path}: {exc.strerror or exc}") from None
        identity = (info.st_dev, info.st_ino)
        self._root = identity  # read: a change of it from now on is news
        if not names and self._held is not None and self._held[0] != info.st_dev:
            raise Unreadable(
                f"{self.path} is empty and on another device than when it held packs: "
                "is a mount missing?"
            )
        if not names and self._held is not None and (self._replaced or self._held != identity):
            raise Unreadable(
                f"{self.path} is empty and is not the folder that held the packs (deleted "
                "and made again?): nothing is pruned until a pack is dropped in it or "
                "attuned restarts"
            )
        if names:
            self._held, self._replaced = identity, False
        return names

    def _scan(self, names: list[str]) -> ScanResult:
        stats = dict.fromkeys(
            ("entries", "candidates", "invalid", "skipped", *_COUNTED.values()), 0
        )
        stats["entries"] = len(names)
        dirs: set[str] = set()
        found: dict[str, Result | None] = {}
        for entry in names:
            found[entry] = self._read_counted(entry, dirs, stats)
        self._forget_gone(set(names), dirs)
        self._found = found
        return self._result(found, stats)

    def _rescan(self, only: set[str]) -> ScanResult:
        """Read the changed entries again; the others are as the last full scan left them
        (the next full pass checks everything, so a lost event costs a delay, not a pack)."""
        assert self._found is not None
        stats = dict.fromkeys(("entries", "skipped", *_COUNTED.values()), 0)
        dirs = self._dirs - only
        for entry in sorted(only):
            if ignored(entry):
                continue
            result = self._read_counted(entry, dirs, stats)
            if result is None and not (self.path / entry).exists():
                self._found.pop(entry, None)
            else:
                self._found[entry] = result
        self._forget_gone(set(self._found), dirs)
        stats["entries"] = len(self._found)
        return self._result(self._found, stats)

    def _read_counted(self, entry: str, dirs: set[str], stats: dict[str, int]) -> Result | None:
        result, outcome = self._read_entry(entry, dirs)
        if outcome is not None:
            stats[_COUNTED[outcome]] += 1
        if isinstance(result, Candidate):
            self._refs[entry] = result.ref
        elif result is None:
            stats["skipped"] += 1
        return result

    def _result(self, found: dict[str, Result | None], stats: dict[str, int]) -> ScanResult:
        results = [found[entry] for entry in sorted(found)]  # the order of a full scan
        candidates = tuple(r for r in results if isinstance(r, Candidate))
        invalid = tuple(r for r in results if isinstance(r, InvalidCandidate))
        stats["candidates"] = len(candidates)
        stats["invalid"] = len(invalid)
        state = SourceState(self.name, readable=True, prune=self.prune)
        return ScanResult(state, candidates, invalid, stats=stats)

    def _read_entry(self, entry: str, dirs: set[str]) -> tuple[Result | None, Outcome | None]:
        path = self.path / entry
        try:
            info = os.stat(path)  # follows a symlink to a pack: its content is copied anyway
        except FileNotFoundError:
            return None, None  # removed since the listing
        except OSError as exc:
            return self._invalid(entry, problems_of(exc, path), None), None
        if stat.S_ISDIR(info.st_mode):
            if not os.path.lexists(path / MANIFEST_NAME):
                return None, None  # a folder that is not a pack (yet)
            dirs.add(entry)
            return self._read_pack_dir(entry, path)
        if stat.S_ISREG(info.st_mode) and is_archive(entry):
            return self._read_archive(entry, path, info)
        return None, None

    def _read_pack_dir(self, entry: str, path: Path) -> tuple[Result, Outcome | None]:
        try:
            taken = self._capture(path, use_cache=True)
        except _ENTRY_ERRORS as exc:
            hint = ref_hint(path / MANIFEST_NAME)
            return self._invalid(entry, problems_of(exc, path), hint), None
        return candidate_of(self.name, entry, taken), taken.outcome

    def _read_archive(
        self, entry: str, path: Path, info: os.stat_result
    ) -> tuple[Result, Outcome | None]:
        """Extract, snapshot, discard the extraction; an unchanged archive is not opened again."""
        limits = self.archive_limits or self._snapshots.limits
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, limits)
        seen = self._archives.get(entry)
        if seen is not None and seen.key == key and _still_there(seen.result):
            return seen.result, Outcome.CACHED
        settled = info.st_ctime_ns < time.time_ns() - self._snapshots.racy_window_ns
        result, outcome, deterministic = self._extract_and_capture(entry, path)
        if settled and deterministic:
            self._archives[entry] = _ArchiveSeen(key, result)
        return result, outcome

    def _extract_and_capture(
        self, entry: str, archive: Path
    ) -> tuple[Result, Outcome | None, bool]:
        """(result, outcome, whether the same archive would give the same result again)."""
        try:
            scratch = Path(tempfile.mkdtemp(dir=self._scratch_parent()))
        except OSError as exc:  # attuned's own disk, not the archive: try again next time
            return self._invalid(entry, problems_of(exc, archive), None), None, False
        extracted = scratch / "archive"
        root: Path | None = None
        try:
            limits = self.archive_limits or self._snapshots.limits
            root = extract_archive(archive, extracted, limits)
            taken = self._capture(root, use_cache=False)
        except _ENTRY_ERRORS as exc:
            problems = [rebased(p, extracted, archive) for p in problems_of(exc, archive)]
            hint = ref_hint(root / MANIFEST_NAME) if root is not None else None
            return self._invalid(entry, problems, hint), None, isinstance(exc, ValidationFailed)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return candidate_of(self.name, entry, taken), taken.outcome, True

    def _scratch_parent(self) -> Path:
        """`<work_dir>/<source>/`, rid of what a crash left there an hour or more ago."""
        parent = self.work_dir / self.name
        parent.mkdir(parents=True, exist_ok=True)
        if not self._scratch_swept:
            self._scratch_swept = True
            for old in parent.iterdir():
                if old.lstat().st_mtime < time.time() - STALE_SCRATCH_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
        return parent

    def _capture(self, path: Path, *, use_cache: bool) -> Snapshot:
        """One retry when the pack changed under the copy: an editor's save is quick."""
        try:
            return self._snapshots.capture(path, use_cache=use_cache)
        except SnapshotChanged:
            return self._snapshots.capture(path, use_cache=use_cache)

    def _invalid(self, entry: str, problems: list[Problem], hint: str | None) -> InvalidCandidate:
        # no ref readable now: the one this entry last had keeps its served version safe
        rendered = tuple(str(p) for p in problems)
        return InvalidCandidate(self.name, entry, "", rendered, hint or self._refs.get(entry))

    def _forget_gone(self, names: set[str], dirs: set[str]) -> None:
        for entry in self._dirs - dirs:
            self._snapshots.forget(self.path / entry)
        self._dirs = dirs
        for entry in set(self._archives) - names:
            del self._archives[entry]
        for entry in set(self._refs) - names:
            del self._refs[entry]


def folder_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a listable folder; None when it is missing, not a folder or not
    listable (execute permission: what the scan needs)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or not os.access(path, os.R_OK | os.X_OK):
        return None
    return info.st_dev, info.st_ino


def _still_there(result: Result) -> bool:
    return not isinstance(result, Candidate) or result.snapshot.is_dir()
