"""Content-addressed snapshots: the one copy of a pack that everything after a scan reads.

A user may go on editing a watched folder; tests and activation read `<root>/<digest>`, which
never changes once it has its name, so the daemon cannot test one content and register
another. A stat cache keeps an unchanged pack from being read again at every scan.

```
<state_dir>/snapshots/
  3f2a9c...e1      one complete, verified copy per content digest
  .tmp-<uuid>/     a copy in progress (never read; removed by collect_garbage after a crash)
```

The copy itself is `snapshot_copy`'s, and what the stat cache compares is `fingerprints`'.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from attuned.errors import Problem, ValidationFailed
from attuned.pack.content import digest, list_files
from attuned.pack.limits import PackLimits, check_files, check_tree
from attuned.pack.loader import Pack, load_pack
from attuned.reconcile.fingerprints import Fingerprint, fingerprint
from attuned.reconcile.snapshot_copy import SnapshotChanged, copy_pack, install

TMP_PREFIX = ".tmp-"
# a file changed less than this long before it was stat'ed is read again next time: a second
# change within the same timestamp tick (2 s on FAT, one jiffy on ext4) would look like none
RACY_WINDOW_NS = 2_000_000_000
_DIGEST_NAME = re.compile(r"^[0-9a-f]{64}$")


class Outcome(StrEnum):
    CACHED = "cached"  # the stat cache answered: no file content was read
    REUSED = "reused"  # the content was read, and a snapshot of it existed already
    MADE = "made"  # a new snapshot was copied and verified


class Summary(NamedTuple):
    """What the planner needs of a snapshot, and all a stat-cache entry keeps of it: a full
    manifest model is 7 KiB a pack, held for the daemon's lifetime."""

    ref: str
    version: str
    digest: str
    requires: tuple[tuple[str, str], ...] = ()  # (ref, version range) of each dependency
    warnings: tuple[Problem, ...] = ()  # naming the user's files

    @classmethod
    def of(cls, pack: Pack) -> Summary:
        requires = tuple((d.ref, d.version) for d in pack.manifest.dependencies)
        return cls(pack.ref, pack.version, pack.digest, requires, tuple(pack.warnings))

    def to_json(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "version": self.version,
            "digest": self.digest,
            "requires": [list(r) for r in self.requires],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Summary:
        """Raises ValueError/TypeError/KeyError on anything but what `to_json` wrote."""
        ref, version, digest, requires = (data[k] for k in ("ref", "version", "digest", "requires"))
        if not isinstance(ref, str) or not isinstance(version, str):
            raise ValueError("ref and version must be text")
        if not isinstance(digest, str) or not _DIGEST_NAME.match(digest):
            raise ValueError(f"not a digest: {digest!r}")
        if not isinstance(requires, list):
            raise ValueError("requires must be a list")
        pairs = []
        for item in requires:
            if not (
                isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)
            ):
                raise ValueError(f"not a requirement: {item!r}")
            pairs.append((item[0], item[1]))
        return cls(ref, version, digest, tuple(pairs))


@dataclass(frozen=True)
class Snapshot:
    """A pack frozen under `path`. `pack` is None on a stat-cache hit (nothing was read):
    then `summary` is all that is known, and `SnapshotStore.snapshot()` loads the rest."""

    pack: Pack | None  # as loaded from `path`, with warnings naming the user's files
    path: Path
    outcome: Outcome
    known: Summary | None = None  # given on a cache hit; else taken from `pack`

    @property
    def summary(self) -> Summary:
        if self.known is not None:
            return self.known
        assert self.pack is not None
        return Summary.of(self.pack)


class _Entry(NamedTuple):
    """One stat cache entry: the source's fingerprint, the snapshot it gave, and what lets a
    restarted daemon trust it without reading a file: the snapshot directory's own
    fingerprint (a damaged or replaced copy no longer matches)."""

    seen: Fingerprint
    summary: Summary
    snapshot_seen: Fingerprint
    checked: bool  # False: read from the state file, the snapshot not yet checked

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.seen.to_json(),
            "snapshot": self.snapshot_seen.to_json(),
            **self.summary.to_json(),
        }


def _remembered(data: object) -> _Entry:
    """An entry as `_Entry.to_json` wrote it; ValueError/TypeError/KeyError otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"not a cache entry: {data!r}")
    return _Entry(
        Fingerprint.from_json(data["source"]),
        Summary.from_json(data),
        Fingerprint.from_json(data["snapshot"]),
        checked=False,
    )


class SnapshotStore:
    """Validated, verified copies of packs under `root`, one directory per content digest.

    Thread-safe: sources scanned in parallel may share one store. `before_copy`, called with
    the source directory between reading and copying it, lets tests edit a pack at the worst
    moment. `limits` caps every pack taken (the config's `pack_limits`; a reload sets it).
    """

    def __init__(
        self,
        root: Path,
        *,
        racy_window_ns: int = RACY_WINDOW_NS,
        before_copy: Callable[[Path], object] | None = None,
        limits: PackLimits | None = None,
    ) -> None:
        self.root = root
        self.limits = limits or PackLimits()
        self.racy_window_ns = racy_window_ns
        self.bytes_hashed = 0  # file content read to compute digests, source and copies
        self.changes = 0  # bumped whenever the stat cache changes: whether to save it
        self._before_copy = before_copy
        self._lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}
        self._in_progress: set[Path] = set()

    def snapshot(self, source_dir: Path) -> tuple[Pack, Path]:
        """The pack in `source_dir`, validated and frozen: (Pack loaded from the copy, its path).
        On a stat-cache hit the Pack is loaded from the snapshot, with the warnings the user's
        files had."""
        taken = self.capture(source_dir)
        if taken.pack is not None:
            return taken.pack, taken.path
        pack = load_pack(taken.path)
        return replace(pack, warnings=list(taken.summary.warnings)), taken.path

    def capture(self, source_dir: Path, *, use_cache: bool = True) -> Snapshot:
        """`snapshot()` that also says whether it read anything (`use_cache=False`: a
        directory that will not be seen again, such as an extracted archive).

        Raises ValidationFailed naming the user's files, or SnapshotChanged.
        """
        started = time.time_ns()
        seen = fingerprint(source_dir) if use_cache else None
        if seen is not None:
            hit = self._cached(str(source_dir), seen)
            if hit is not None:
                return hit
        taken = self._take(source_dir)
        if seen is not None and seen.settled(started - self.racy_window_ns):
            entry = self._entry(seen, taken)
            if entry is not None:
                with self._lock:
                    self._cache[str(source_dir)] = entry
                    self.changes += 1
        return taken

    def forget(self, source_dir: Path) -> None:
        """Drop the stat cache entry of a directory that is gone."""
        with self._lock:
            if self._cache.pop(str(source_dir), None) is not None:
                self.changes += 1

    def cache_to_json(self) -> dict[str, object]:
        """The stat cache as `StatCache` saves it: source directory -> entry."""
        with self._lock:
            return {source: entry.to_json() for source, entry in self._cache.items()}

    def cache_from_json(self, data: dict[str, object]) -> int:
        """Take entries a previous process saved; returns how many were usable. Each is
        checked when first used: the source's fingerprint as always, and the snapshot's
        own, so a cache older than the files can only cost a read, never hide a change."""
        taken = 0
        with self._lock:
            for source, raw in data.items():
                try:
                    entry = _remembered(raw)
                except (ValueError, TypeError, KeyError):
                    continue
                self._cache.setdefault(source, entry)
                taken += 1
        return taken

    def collect_garbage(self, keep: set[str]) -> list[Path]:
        """Delete snapshots whose digest is not in `keep`, and copies a crash left behind.

        The caller keeps every digest still in use: candidates, served packs, running tests.
        """
        removed: list[Path] = []
        with self._lock:
            busy = set(self._in_progress)
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            stale_copy = path.name.startswith(TMP_PREFIX) and path not in busy
            unused = _DIGEST_NAME.match(path.name) is not None and path.name not in keep
            if stale_copy or unused:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        with self._lock:
            gone = {path.name for path in removed}
            for source, entry in list(self._cache.items()):
                if entry.summary.digest in gone:
                    del self._cache[source]
                    self.changes += 1
        return removed

    def _cached(self, source: str, seen: Fingerprint) -> Snapshot | None:
        with self._lock:
            entry = self._cache.get(source)
        if entry is None or entry.seen != seen:
            return None
        path = self.root / entry.summary.digest
        if entry.checked:
            if not path.is_dir():
                return None
        else:  # from the state file: is the snapshot still what it was?
            if fingerprint(path) != entry.snapshot_seen:
                return None
            with self._lock:
                if self._cache.get(source) is entry:
                    self._cache[source] = entry._replace(checked=True)
        return Snapshot(None, path, Outcome.CACHED, entry.summary)

    def _entry(self, seen: Fingerprint, taken: Snapshot) -> _Entry | None:
        """A cache entry for a snapshot just taken (None when its directory cannot be
        walked: then it is simply read again next time)."""
        snapshot_seen = fingerprint(taken.path)
        if snapshot_seen is None:
            return None
        return _Entry(seen, taken.summary, snapshot_seen, checked=True)

    def _take(self, source_dir: Path) -> Snapshot:
        limits = self.limits  # one value for the whole take, whatever a reload does
        check_tree(source_dir, limits)  # stat sizes only: a huge file is never read
        pack = load_pack(source_dir)  # ValidationFailed here names the user's files
        check_files(source_dir, pack.files, limits)  # grown since it was measured?
        self._hashed(pack)
        final = self.root / pack.digest
        existing = self._verified(final, pack)
        if existing is not None:
            return Snapshot(existing, final, Outcome.REUSED)
        if self._before_copy is not None:
            self._before_copy(source_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        with self._lock:
            self._in_progress.add(tmp)
        try:
            self._copy(source_dir, pack, tmp, limits)
            install(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with self._lock:
                self._in_progress.discard(tmp)
        # the copy holds the very bytes that were validated: the pack as read, moved
        return Snapshot(replace(pack, path=final), final, Outcome.MADE)

    def _copy(self, source_dir: Path, pack: Pack, tmp: Path, limits: PackLimits) -> None:
        """Copy the validated files; the bytes written must have the digest just read.

        The digest covers the bytes that were validated (load_pack), so an equal digest is
        an equal validation: the copy is not loaded again.
        """
        written = copy_pack(source_dir, pack.files, tmp, limits)
        self._hashed(pack)
        if written != pack.digest:
            raise SnapshotChanged(
                source_dir,
                f"files changed while being copied (digest {pack.digest[:12]} "
                f"became {written[:12]})",
            )

    def _verified(self, final: Path, pack: Pack) -> Pack | None:
        """The existing snapshot of this digest, or None (absent, or damaged and moved away)."""
        if not final.is_dir():
            return None
        try:  # same files, same bytes: the same validation as `pack`'s, no need to parse
            intact = digest(final, list_files(final)) == pack.digest
        except (ValidationFailed, OSError):
            intact = False
        self._hashed(pack)
        if intact:
            return replace(pack, path=final)
        # damaged (say a power cut before the data reached the disk): replace it
        trash = final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}")
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return None

    def _hashed(self, pack: Pack) -> None:
        with self._lock:
            self.bytes_hashed += sum(f.size for f in pack.files)
