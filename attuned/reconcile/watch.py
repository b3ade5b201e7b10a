"""watchdog (inotify) wiring: turn filesystem events in watched folders into per-entry keys.

Events can be dropped (inotify queue overflow), so this is only the fast path; the periodic
full resync is what guarantees convergence. watchdog 7 reports an overflow only as a log
record, and its own recovery re-walks the whole tree under its lock: with the default mask
that walk queued open/close events for every directory and overflowed again, forever
(measured: 3,000 directories, no event ever again); with the mask below it recovers, but took
about 40 s for 3,000 directories. So an overflow record becomes a callback, and the daemon
answers it with `restart()` (a fresh inotify instance, ready in under a second) and a full
pass for what was lost.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from attuned.report.log import Event, get_logger

# watchdog warns when a directory moved within a recursive watch is re-added; harmless noise
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

log = get_logger()
EntryOf = Callable[[Path], str | None]


class _Handler(FileSystemEventHandler):
    def __init__(self, source: str, entry_of: EntryOf, changed: Callable[[str, str], None]) -> None:
        self.source = source
        self.entry_of = entry_of
        self.changed = changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(raw.decode() if isinstance(raw, bytes) else raw)
            entry = self.entry_of(path)
            if entry is not None:
                self.changed(self.source, entry)


# What changes a pack. The filter also sets the inotify mask: without it the kernel queues
# open/access/close-nowrite events for every directory listed and file read, including by
# attuned's own scans and by watchdog's own walk when it adds watches; below ~3,000
# directories that walk alone overflowed the queue, and watchdog's recovery walks again.
_CHANGES = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    DirModifiedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileClosedEvent,
]
_OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
_OVERFLOW_MESSAGE = "Inotify queue overflowed"


class _OverflowSignal(logging.Handler):
    """Turns watchdog's overflow log record into a call (watchdog has no other signal)."""

    def __init__(self, overflowed: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.overflowed = overflowed

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(_OVERFLOW_MESSAGE):
            self.overflowed()


class FolderWatcher:
    """One inotify observer for every watched folder; (re)configured on start and reload.

    `overflowed` is called (from watchdog's thread) when the kernel dropped events; the
    owner then calls `restart()` from its own thread and rescans.
    """

    def __init__(
        self,
        changed: Callable[[str, str], None],
        overflowed: Callable[[], None] | None = None,
    ) -> None:
        self.changed = changed
        self._observer: BaseObserver = Observer()
        self._watches: dict[str, tuple[Path, ObservedWatch, EntryOf]] = {}
        self._signal = _OverflowSignal(overflowed) if overflowed is not None else None
        if self._signal is not None:
            for name in _OVERFLOW_LOGGERS:
                logging.getLogger(name).addHandler(self._signal)
        self._observer.start()

    def watch(self, source: str, folder: Path, entry_of: EntryOf) -> bool:
        """Watch `folder` for `source`; False (and logged) when it cannot be watched now."""
        current = self._watches.get(source)
        if current is not None and current[0] == folder and folder.is_dir():
            return True
        self.unwatch(source)
        try:
            handle = self._schedule(source, folder, entry_of)
        except OSError as exc:
            log.warning(
                Event.SOURCE_WATCH_FAILED,
                source=source,
                path=str(folder),
                error=exc.strerror or str(exc),
            )
            return False
        self._watches[source] = (folder, handle, entry_of)
        return True

    def _schedule(self, source: str, folder: Path, entry_of: EntryOf) -> ObservedWatch:
        handler = _Handler(source, entry_of, self.changed)
        return self._observer.schedule(handler, str(folder), recursive=True, event_filter=_CHANGES)

    def restart(self) -> list[str]:
        """A fresh observer (its own inotify instance) with the same watches, after an
        overflow; returns the sources watched again. The old observer is stopped first, so
        its late overflow records are not mistaken for a new overflow."""
        old, self._observer = self._observer, Observer()
        old.stop()
        old.join(timeout=10)
        self._observer.start()
        watches, self._watches = self._watches, {}
        for source, (folder, _, entry_of) in watches.items():
            self.watch(source, folder, entry_of)
        return sorted(self._watches)

    def unwatch(self, source: str) -> None:
        found = self._watches.pop(source, None)
        if found is not None:
            with contextlib.suppress(KeyError, OSError):  # already gone with its folder
                self._observer.unschedule(found[1])

    def watched(self) -> set[str]:
        return set(self._watches)

    def stop(self) -> None:
        if self._signal is not None:
            for name in _OVERFLOW_LOGGERS:
                logging.getLogger(name).removeHandler(self._signal)
        self._observer.stop()
        self._observer.join(timeout=5)
