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
import os
import queue
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
from watchdog.observers.api import BaseObserver, EventDispatcher, ObservedWatch

from attuned.reconcile.sources.directory import FOLDER_ITSELF, folder_identity
from attuned.report.log import Event, get_logger

# watchdog warns when a directory moved within a recursive watch is re-added; harmless noise
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

log = get_logger()
EntryOf = Callable[[Path], str | None]


class _Handler(FileSystemEventHandler):
    def __init__(
        self,
        source: str,
        folder: Path,
        entry_of: EntryOf,
        changed: Callable[[str, str], None],
        lost: Callable[[str], None],
    ) -> None:
        self.source = source
        self.folder = os.path.abspath(folder)
        self.entry_of = entry_of
        self.changed = changed
        self.lost = lost

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "moved") and self._is_folder(event.src_path):
            # the folder itself was deleted or moved away: its watch is dead (watchdog stops
            # it), and a folder made again at the path may even reuse its inode number
            self.lost(self.source)
            self.changed(self.source, FOLDER_ITSELF)
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(raw.decode() if isinstance(raw, bytes) else raw)
            entry = self.entry_of(path)
            if entry is not None:
                self.changed(self.source, entry)

    def _is_folder(self, raw: bytes | str) -> bool:
        return os.path.abspath(raw.decode() if isinstance(raw, bytes) else raw) == self.folder


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
        # source -> (folder, watch, entry_of, (device, inode) of the folder watched)
        self._watches: dict[str, tuple[Path, ObservedWatch, EntryOf, tuple[int, int] | None]] = {}
        self._lost: set[str] = set()  # sources whose folder itself was deleted or moved
        self._signal = _OverflowSignal(overflowed) if overflowed is not None else None
        if self._signal is not None:
            for name in _OVERFLOW_LOGGERS:
                logging.getLogger(name).addHandler(self._signal)
        self._observer.start()

    def watch(self, source: str, folder: Path, entry_of: EntryOf) -> bool:
        """Watch `folder` for `source`; False (and logged) when it cannot be watched now."""
        current = self._watches.get(source)
        identity = folder_identity(folder)
        same = current is not None and current[0] == folder and current[3] == identity
        if same and identity is not None and source not in self._lost:
            return True  # the same folder: a folder made again at the path needs a new watch
        self.unwatch(source)
        self._lost.discard(source)
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
        self._watches[source] = (folder, handle, entry_of, identity)
        return True

    def _schedule(self, source: str, folder: Path, entry_of: EntryOf) -> ObservedWatch:
        handler = _Handler(source, folder, entry_of, self.changed, self._lost.add)
        return self._observer.schedule(handler, str(folder), recursive=True, event_filter=_CHANGES)

    def restart(self) -> list[str]:
        """A fresh observer (its own inotify instance) with the same watches, after an
        overflow; returns the sources watched again. The old observer is stopped first, so
        its late overflow records are not mistaken for a new overflow."""
        old, self._observer = self._observer, Observer()
        _stop(old)
        old.join(timeout=10)
        self._observer.start()
        watches, self._watches = self._watches, {}
        for source, (folder, _, entry_of, _identity) in watches.items():
            self.watch(source, folder, entry_of)
        return sorted(self._watches)

    def unwatch(self, source: str) -> None:
        found = self._watches.pop(source, None)
        if found is not None:
            with contextlib.suppress(KeyError, OSError):  # already gone with its folder
                self._observer.unschedule(found[1])

    def lost(self) -> set[str]:
        """Sources whose watched folder itself was deleted or moved away since it was
        watched: `watch()` them again (the folder may be back already)."""
        return set(self._lost)

    def watched(self) -> set[str]:
        return set(self._watches)

    def stop(self) -> None:
        if self._signal is not None:
            for name in _OVERFLOW_LOGGERS:
                logging.getLogger(name).removeHandler(self._signal)
        _stop(self._observer)
        self._observer.join(timeout=5)


def _stop(observer: BaseObserver) -> None:
    """Stop an observer whatever became of its folders: a shutdown must never fail on the
    watcher's bookkeeping (a KeyError from watchdog's inotify tree was seen on SIGTERM right
    after packs were pruned). `stop()` marks the thread stopped before it removes the
    watches, so after a failure there it is enough to stop each emitter and wake the
    dispatcher."""
    try:
        observer.stop()
    except Exception:  # whatever it was, the observer must still end
        for emitter in list(observer.emitters):
            with contextlib.suppress(Exception):
                emitter.stop()
        with contextlib.suppress(queue.Full):
            observer.event_queue.put_nowait(EventDispatcher.stop_event)
