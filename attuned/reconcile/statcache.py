"""The stat caches, kept across restarts: `<state_dir>/statcache.json`.

A pass decides "unchanged" from `stat` alone only while the daemon remembers each pack's
fingerprint; without this file a restart read and hashed every pack again (5 ms a pack: a
minute at 10,000 packs before the first pass ended). The file is a cache, never a source of
truth: it is written atomically, every entry is checked against the files before it is
believed (the source's fingerprint, the snapshot's own fingerprint, the served directory's
fingerprint against the digest the database records), and a file that is missing, damaged,
of another format or of another snapshot root is ignored: the cost is one slower pass.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from attuned.report.atomic import replace_text
from attuned.report.log import Event

if TYPE_CHECKING:
    from attuned.reconcile.drift import DriftCheck
    from attuned.reconcile.snapshots import SnapshotStore

FORMAT = 1
FILE_NAME = "statcache.json"
SAVE_INTERVAL_S = 60.0

log = structlog.get_logger("attuned.statcache")


def load(path: Path, snapshots_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(snapshot entries, drift entries) saved by a previous process, or two empty dicts."""
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}, {}
    except (OSError, ValueError) as exc:
        log.warning(Event.STATCACHE_IGNORED, path=str(path), reason=str(exc))
        return {}, {}
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or data.get("snapshots_root") != str(snapshots_root)
        or not isinstance(data.get("snapshots"), dict)
        or not isinstance(data.get("drift"), dict)
    ):
        log.warning(
            Event.STATCACHE_IGNORED,
            path=str(path),
            reason="another format or another snapshot directory",
        )
        return {}, {}
    return data["snapshots"], data["drift"]


def save(path: Path, snapshots_root: Path, snapshots: dict[str, Any], drift: dict[str, Any]) -> int:
    """Replace the file atomically; returns its size in bytes."""
    text = json.dumps(
        {
            "format": FORMAT,
            "snapshots_root": str(snapshots_root),
            "snapshots": snapshots,
            "drift": drift,
        },
        separators=(",", ":"),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, text, mode=0o600)
    return len(text)


class StatCacheKeeper:
    """When the daemon reads and writes the file: once at the first pass, then after a pass
    that changed a cache, at most every `interval` seconds (at 10,000 packs the file is
    megabytes: a drop must not pay for rewriting it), and at a clean stop."""

    def __init__(
        self,
        state_dir: Path,
        snapshots: SnapshotStore,
        drift: DriftCheck,
        *,
        interval: float = SAVE_INTERVAL_S,
    ) -> None:
        self.path = state_dir / FILE_NAME
        self.snapshots = snapshots
        self.drift = drift
        self.interval = interval
        self._loaded = False
        self._saved: tuple[int, int] | None = None  # the caches' change counts when saved
        self._saved_at = -math.inf

    def load_once(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        snapshots, drift = load(self.path, self.snapshots.root)
        if snapshots or drift:
            log.info(
                Event.STATCACHE_LOADED,
                path=str(self.path),
                snapshots=self.snapshots.cache_from_json(snapshots),
                served=self.drift.cache_from_json(drift),
            )
        self._saved = self._counts()

    def save_if_due(self, *, now: bool = False) -> None:
        if not self._loaded or self._counts() == self._saved:
            return
        if not now and time.monotonic() - self._saved_at < self.interval:
            return
        counts = self._counts()
        try:
            save(
                self.path,
                self.snapshots.root,
                self.snapshots.cache_to_json(),
                self.drift.cache_to_json(),
            )
        except OSError as exc:  # a full disk: the next start reads more, nothing is lost
            log.warning(Event.STATCACHE_WRITE_FAILED, path=str(self.path), error=str(exc))
            return
        self._saved, self._saved_at = counts, time.monotonic()

    def _counts(self) -> tuple[int, int]:
        return self.snapshots.changes, self.drift.changes
