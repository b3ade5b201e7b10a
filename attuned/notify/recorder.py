"""Events the daemon writes outside a registration (a pack blocked, a source unreadable,
drift repaired, leadership taken): each in a transaction of its own, and, when the database
refuses, kept and written on the next pass rather than lost while the outage lasts."""

from __future__ import annotations

from collections.abc import Callable

from attuned.errors import headline
from attuned.report.log import Event, get_logger
from attuned.store.outbox import EventRecord

log = get_logger()

KEPT_MAX = 1000  # events kept while the database refuses them; the oldest go first


class EventRecorder:
    def __init__(self, write: Callable[[list[EventRecord]], int] | None = None) -> None:
        self.write = write  # None until the database is open
        self.unwritten: list[EventRecord] = []
        self.dropped = 0

    def record(self, *records: EventRecord) -> int:
        """Write these (and any kept from before); returns how many were written."""
        self.unwritten.extend(records)
        if len(self.unwritten) > KEPT_MAX:
            self.dropped += len(self.unwritten) - KEPT_MAX
            del self.unwritten[: len(self.unwritten) - KEPT_MAX]
        return self.flush()

    def flush(self) -> int:
        if not self.unwritten or self.write is None:
            return 0
        try:
            self.write(self.unwritten)
        except Exception as exc:  # the database is down: the next pass tries again
            log.warning(
                Event.NOTIFY_RECORD_FAILED,
                error=headline(exc),
                waiting=len(self.unwritten),
                dropped=self.dropped,
            )
            return 0
        written, self.unwritten = len(self.unwritten), []
        return written
