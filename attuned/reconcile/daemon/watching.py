"""The daemon's ears: inotify on each folder source and on the triggers folder.

Events arrive on watchdog's threads and are only turned into requests for the loop: folder
changes after a quiet period per entry (an editor's save or a copy is many events), a
trigger at once, and a lost queue (overflow) as a full pass after the watches are rebuilt.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from pathlib import Path

from attuned.reconcile.daemon.debounce import Debouncer
from attuned.reconcile.daemon.requests import POLL, Requests
from attuned.reconcile.daemon.watch import FolderWatcher
from attuned.reconcile.sourceset import SourceSet
from attuned.report.log import Event, get_logger

log = get_logger()


def _trigger_name(path: Path) -> str | None:
    """triggers/<source> -> <source>; editors' and our own temporary names are ignored."""
    name = path.name
    if path.parent.name != "triggers" or name.startswith(".") or not name:
        return None
    return name


class Watches:
    """The folder and trigger watchers and the debouncer, made and stopped together."""

    def __init__(self, requests: Requests, sources: SourceSet, quiet_period: float) -> None:
        self.requests = requests
        self.sources = sources
        self.overflow = threading.Event()  # set by watchdog's thread on a queue overflow
        self.debouncer = Debouncer(quiet_period, self._debounced)
        self.folders = FolderWatcher(self._changed, overflowed=self._overflowed)
        self.triggers = FolderWatcher(self._triggered)

    def watch_all(self, triggers: Path) -> None:
        """The triggers folder, and each folder source as configured now."""
        triggers.mkdir(parents=True, exist_ok=True)
        self.triggers.watch("triggers", triggers, _trigger_name)
        folders = self.sources.folders()
        for name in self.folders.watched() - {f.source for f in folders}:
            self.folders.unwatch(name)
        for folder in folders:
            self.folders.watch(folder.source, folder.path, folder.source_obj.entry_for)

    def lost(self) -> set[str]:
        return self.folders.lost()

    def stop(self) -> None:
        for watcher in (self.folders, self.triggers):
            watcher.stop()
        self.debouncer.stop()

    def recover(self) -> None:
        watched = [
            source for watcher in (self.folders, self.triggers) for source in watcher.restart()
        ]
        self.overflow.clear()  # late records of the observers just stopped
        log.warning(
            Event.SOURCE_WATCH_OVERFLOW,
            sources=watched,
            action="inotify watches rebuilt; a full pass finds what the lost events said",
        )

    def _changed(self, source: str, entry: str) -> None:
        self.debouncer.touch((source, entry))

    def _overflowed(self) -> None:
        """watchdog's thread: the kernel dropped events; the loop rebuilds and rescans."""
        self.overflow.set()
        self.requests.ask(full=True)

    def _triggered(self, _watched: str, name: str) -> None:
        """`attuned trigger NAME` (or a post-receive hook) touched triggers/NAME: poll now."""
        if self.sources.trigger(name):
            log.info(Event.SOURCE_TRIGGERED, source=name)
            self.requests.ask(changes=[(name, POLL)])

    def _debounced(self, keys: list[Hashable]) -> None:
        changes = [(str(key[0]), str(key[1])) for key in keys if isinstance(key, tuple)]
        self.requests.ask(changes=changes)
