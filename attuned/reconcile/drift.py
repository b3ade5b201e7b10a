"""Drift: served files that no longer match the digest the database records for them.

A full pass checks every served pack, so the check must cost stats, not reads: each pack's
directory fingerprint (every file's size, mtimes, inode) is remembered once its content has
been verified, and content is hashed again only when the fingerprint changed. A changed pack
is restored from its snapshot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from attuned.errors import AttunedError
from attuned.pack.content import digest, list_files
from attuned.reconcile.fingerprints import Fingerprint, fingerprint
from attuned.reconcile.snapshots import SnapshotStore
from attuned.registry import Registry
from attuned.report.log import ConditionLog, Event
from attuned.store import repository


class DriftCheck:
    def __init__(
        self,
        snapshots: SnapshotStore,
        conditions: ConditionLog,
        *,
        racy_window_ns: int = 2_000_000_000,
    ) -> None:
        self.snapshots = snapshots
        self.racy_window_ns = racy_window_ns
        self.conditions = conditions
        self._verified: dict[str, tuple[str, Fingerprint]] = {}  # ref -> (digest, fingerprint)
        self.bytes_hashed = 0  # content read by the check: 0 on a pass where nothing changed
        self.changes = 0  # bumped whenever `_verified` changes: whether to save it

    def cache_to_json(self) -> dict[str, object]:
        """ref -> [digest, fingerprint] of every served pack verified, for `StatCache`."""
        return {ref: [digest, seen.to_json()] for ref, (digest, seen) in self._verified.items()}

    def cache_from_json(self, data: dict[str, object]) -> int:
        """Take what a previous process verified: an entry only spares a read while the
        served directory's fingerprint and the recorded digest are both unchanged."""
        taken = 0
        for ref, raw in data.items():
            try:
                if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], str):
                    raise ValueError(raw)
                self._verified.setdefault(ref, (raw[0], Fingerprint.from_json(raw[1])))
            except (ValueError, TypeError):
                continue
            taken += 1
        return taken

    def check(
        self, registry: Registry, records: list[repository.PackHead] | None = None
    ) -> list[str]:
        """Restore every drifted pack; returns the refs found drifted. `records`: the
        managed heads, when the caller has just read them."""
        if records is None:
            with registry.db.read() as session:
                records = repository.managed_heads(session)
        self._forget_unserved({record.ref for record in records})
        drifted = []
        for record in records:
            actual = self._drifted_digest(registry, record)
            if actual is None:
                continue
            drifted.append(record.ref)
            if self._verified.pop(record.ref, None) is not None:
                self.changes += 1
            self._repair(registry, record, actual)
        return drifted

    def _forget_unserved(self, served_refs: set[str]) -> None:
        for ref in [ref for ref in self._verified if ref not in served_refs]:
            del self._verified[ref]  # no longer served: nothing to keep for it
            self.changes += 1

    def _drifted_digest(self, registry: Registry, record: repository.PackHead) -> str | None:
        """What the served files of `record` digest to when that is not the recorded digest;
        None when they match (or are not served), read only when the fingerprint changed."""
        found = registry.store.active_path(record.ref)
        if found is None:
            return None
        started_ns = time.time_ns()
        seen = fingerprint(found)
        if seen is None and not os.path.isdir(found):
            return None  # gone: the store's repair at start makes links agree again
        served = Path(found)
        if seen is not None and self._verified.get(record.ref) == (record.digest, seen):
            return None
        actual = self._content_digest(served)
        if actual != record.digest:
            return actual
        # remember only a settled fingerprint: a write in this same clock tick could
        # otherwise hide behind an unchanged one
        if seen is not None and seen.settled(started_ns - self.racy_window_ns):
            self._verified[record.ref] = (record.digest, seen)
            self.changes += 1
        return None

    def _content_digest(self, served: Path) -> str:
        """The digest of what `served` holds now (its bytes counted as hashed), or why it
        cannot be read."""
        try:
            files = list_files(served)
            actual = digest(served, files)
            self.bytes_hashed += sum(f.size for f in files)
        except AttunedError as exc:
            actual = f"unreadable: {exc}"
        return actual

    def _repair(self, registry: Registry, record: repository.PackHead, actual: str) -> None:
        """Serve the snapshot of the recorded digest again, or say there is none."""
        snapshot = self.snapshots.root / record.digest
        if snapshot.is_dir():
            registry.store.restore(record.ref, record.version, snapshot)
            self.conditions.tell(
                "warning",
                Event.PACK_DRIFT_REPAIRED,
                pack=record.ref,
                version=record.version,
                digest=record.digest,
                source=record.source,
            )
        else:
            self.conditions.report(
                f"drift:{record.ref}:{actual}",
                Event.PACK_DRIFT_DETECTED,
                pack=record.ref,
                version=record.version,
                digest=record.digest,
                reason="no snapshot to restore from (registered by hand?)",
            )
