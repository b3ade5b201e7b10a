"""watchdog (inotify) wiring: turn filesystem events in watched folders into per-entry keys.

Events can be dropped (inotify queue overflow), so this is only the fast path; the periodic
full resync is what guarantees convergence.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
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
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(raw.decode() if isinstance(raw, bytes) else raw)
            entry = self.entry_of(path)
            if entry is not None:
                self.changed(self.source, entry)


class FolderWatcher:
    """One inotify observer for every watched folder; (re)configured on start and reload."""

    def __init__(self, changed: Callable[[str, str], None]) -> None:
        self.changed = changed
        self._observer: BaseObserver = Observer()
        self._watches: dict[str, tuple[Path, ObservedWatch]] = {}
        self._observer.start()

    def watch(self, source: str, folder: Path, entry_of: EntryOf) -> bool:
        """Watch `folder` for `source`; False (and logged) when it cannot be watched now."""
        current = self._watches.get(source)
        if current is not None and current[0] == folder and folder.is_dir():
            return True
        self.unwatch(source)
        try:
            handle = self._observer.schedule(
                _Handler(source, entry_of, self.changed), str(folder), recursive=True
            )
        except OSError as exc:
            log.warning(
                Event.SOURCE_WATCH_FAILED,
                source=source,
                path=str(folder),
                error=exc.strerror or str(exc),
            )
            return False
        self._watches[source] = (folder, handle)
        return True

    def unwatch(self, source: str) -> None:
        found = self._watches.pop(source, None)
        if found is not None:
            with contextlib.suppress(KeyError, OSError):  # already gone with its folder
                self._observer.unschedule(found[1])

    def watched(self) -> set[str]:
        return set(self._watches)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
