"""The configured sources as live objects: built from config, kept across reloads, scanned.

A source whose configuration did not change keeps its instance across SIGHUP, so a folder
keeps its stat cache and a git source its cache, backoff and last revision. Each scan
updates that source's entry of the status file and logs what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from attuned.config import AttunedConfig, DirectorySourceConfig
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.base import ScanResult
from attuned.reconcile.sources.directory import DirectorySource
from attuned.report.log import ConditionLog, Event, get_logger
from attuned.report.metrics import MetricCounters
from attuned.report.status import SourceStatus, now
from attuned.settings.git import GitSourceConfig, redact

if TYPE_CHECKING:  # pygit2 costs 11 MiB of RSS: imported only when a git source exists
    from attuned.reconcile.sources.git import GitSource
    from attuned.reconcile.sources.git_verify import Unverified

    AnySource = DirectorySource | GitSource

log = get_logger()
AnySourceConfig = DirectorySourceConfig | GitSourceConfig


@dataclass(frozen=True)
class Folder:
    """A watched folder, for inotify."""

    source: str
    path: Path
    source_obj: DirectorySource


class SourceSet:
    def __init__(self, snapshots: SnapshotStore, conditions: ConditionLog) -> None:
        self.snapshots = snapshots
        self.conditions = conditions
        self.sources: dict[str, AnySource] = {}
        self.configs: dict[str, AnySourceConfig] = {}
        self.status: dict[str, SourceStatus] = {}
        self.counters: MetricCounters | None = None
        self._polled_once: set[str] = set()

    def configure(self, config: AttunedConfig) -> tuple[list[str], list[str]]:
        """Build sources for `config`, reusing unchanged ones; returns (added, removed)."""
        work_dir = config.state_dir / "work"
        self.snapshots.limits = config.pack_limits.limits()  # for every source, kept or new
        fresh: dict[str, AnySource] = {}
        for entry in config.sources:
            if self.configs.get(entry.name) == entry and entry.name in self.sources:
                kept = fresh[entry.name] = self.sources[entry.name]
                if not isinstance(kept, DirectorySource):
                    kept.reload()  # a changed allowed-signers file or keyring counts now
                continue
            if isinstance(entry, DirectorySourceConfig):
                if entry.create:
                    entry.path.mkdir(parents=True, exist_ok=True)
                fresh[entry.name] = DirectorySource(
                    entry.name,
                    entry.path,
                    self.snapshots,
                    prune=config.prunes(entry),
                    work_dir=work_dir,
                )
            else:
                from attuned.reconcile.sources.git import GitSource

                fresh[entry.name] = GitSource(
                    entry,
                    self.snapshots,
                    cache_dir=config.git_cache_path / entry.name,
                    work_dir=work_dir,
                    prune=config.prunes(entry),
                )
                self._polled_once.discard(entry.name)
        for name, old in self.sources.items():
            if fresh.get(name) is not old and not isinstance(old, DirectorySource):
                old.close()
        added = sorted(set(fresh) - set(self.sources))
        removed = sorted(set(self.sources) - set(fresh))
        self.sources = fresh
        self.configs = {c.name: c for c in config.sources}
        self.status = {
            c.name: self.status.get(c.name)
            or SourceStatus(name=c.name, type=c.type, location=_location(c))
            for c in config.sources
        }
        return added, removed

    def folders(self) -> list[Folder]:
        return [
            Folder(name, source.path, source)
            for name, source in self.sources.items()
            if isinstance(source, DirectorySource)
        ]

    def moved_folders(self) -> list[str]:
        """Watched folders that are no longer (or again) the folder their last scan read:
        deleted, moved away, replaced, made unreadable, or back. inotify says nothing
        about the watched folder itself, so the daemon asks this every tick."""
        return [f.source for f in self.folders() if f.source_obj.root_moved()]

    def folder_lost(self, name: str) -> None:
        source = self.sources.get(name)
        if isinstance(source, DirectorySource):
            source.folder_lost()

    def git_configs(self) -> list[GitSourceConfig]:
        return [c for c in self.configs.values() if isinstance(c, GitSourceConfig)]

    def trigger(self, name: str) -> bool:
        """A push was announced: the next scan of `name` asks the server, backoff or not."""
        source = self.sources.get(name)
        if source is not None and not isinstance(source, DirectorySource):
            source.retry_now()
        return source is not None

    def scan_all(
        self,
        poll: set[str],
        heartbeat: Callable[[], None] = lambda: None,
        changed: dict[str, set[str]] | None = None,
    ) -> list[ScanResult]:
        """Scan every source; git sources ask their server only when in `poll`, when never
        polled yet, or when their interval has passed. With `changed` (a pass for inotify
        events), a folder reads only its changed entries again, unless it is in `poll` (a
        trigger: read it whole)."""
        results = []
        for name, source in self.sources.items():
            heartbeat()
            if not isinstance(source, DirectorySource):
                due = source.next_poll_at is None or source.next_poll_at <= now()
                refresh = name in poll or name not in self._polled_once or due
                result = source.scan(refresh=refresh)
                if refresh:
                    self._polled_once.add(name)
            else:  # a folder in `poll` (`attuned trigger`) is read whole, as a full pass does
                only = None if changed is None or name in poll else changed.get(name, set())
                result = source.scan(only)
            self._record(name, source, result)
            results.append(result)
        return results

    def collect_garbage(self) -> None:
        for source in self.sources.values():
            if not isinstance(source, DirectorySource):
                source.collect_garbage()

    def _record(self, name: str, source: AnySource, result: ScanResult) -> None:
        status = self.status[name]
        status.last_scan = now()
        status.readable = result.state.readable
        if not isinstance(source, DirectorySource):
            previous = status.revision
            status.revision = source.last_revision
            if result.revision and result.revision != previous:
                self.conditions.tell(
                    "info",
                    Event.SOURCE_FETCHED,
                    source=name,
                    old=previous,
                    new=result.revision,
                    ref=source.last_ref,
                    url=redact(source.config.url),
                )
        held = getattr(source, "unverified", None)
        if held is not None and result.state.error == held.error:
            self._unverified(name, held)
        if result.state.readable:
            if self.counters is not None:
                self.counters.source_succeeded(name, status.last_scan)
            status.candidates = len(result.candidates)
            status.invalid = [
                {"entry": i.entry, "problems": list(i.problems[:5])} for i in result.invalid
            ]
            if result.state.error is None:
                status.error = status.error_since = None
            elif status.error != result.state.error:  # held at its last verified commit
                status.error, status.error_since = result.state.error, now()
            log.info(
                Event.SOURCE_SCANNED,
                source=name,
                revision=result.revision,
                **{
                    "candidates": len(result.candidates),
                    "invalid": len(result.invalid),
                    **result.stats,
                },
            )
        else:
            if status.error != result.state.error:
                status.error_since = now()
                if held is None:  # an unverified commit has its own event
                    self.conditions.tell(
                        "warning", Event.SOURCE_ERROR, source=name, error=result.state.error
                    )
            status.error = result.state.error
        for invalid in result.invalid:
            self.conditions.report(
                f"invalid:{name}:{invalid.entry}",
                Event.PACK_BLOCKED,
                pack=invalid.ref_hint,
                source=name,
                entry=invalid.entry,
                reason="invalid: " + "; ".join(invalid.problems),
            )

    def _unverified(self, name: str, held: Unverified) -> None:
        """source.verification.failed, once per (commit, reason): in the log and the outbox."""
        self.conditions.report(
            f"unverified:{name}:{held.commit}",
            Event.SOURCE_VERIFICATION_FAILED,
            source=name,
            revision=held.commit,
            reason=held.reason,
            signer=held.signer,
        )


def _location(config: AnySourceConfig) -> str:
    if isinstance(config, GitSourceConfig):
        where = redact(config.url)
        return f"{where}#{config.path}" if config.path else where
    return str(config.path.absolute())
