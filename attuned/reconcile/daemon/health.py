"""Degraded and back: what the daemon does when the database or the disk fails it.

Not a pack's fault, so no pack is marked failed: the daemon says `degraded` (logged once
while the same error lasts), keeps away from the database until an exponential backoff
ends, asks for a pass then, and logs its recovery.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from attuned.errors import headline
from attuned.reconcile.apply import StepResult
from attuned.reconcile.memory import backoff
from attuned.reconcile.model import FailureKind
from attuned.report.log import Event, get_logger
from attuned.report.status import now

if TYPE_CHECKING:
    from attuned.reconcile.daemon.loop import Daemon

log = get_logger()


class Health:
    """The backoff state: failures in a row, when the database may be tried again."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.retry_timer: threading.Timer | None = None
        self.db_failures = 0
        self.backoff_until = 0.0  # monotonic: no database contact before this (degraded)
        self.told_transient: str | None = None  # the transient error last logged as degraded

    def backing_off(self) -> bool:
        """Degraded: wait out the backoff without touching the database; what is asked
        meanwhile (events, resyncs) stays recorded for the pass when it ends. A reload is
        applied at once: it needs no database."""
        daemon = self.daemon
        remaining = self.backoff_until - time.monotonic()
        if remaining <= 0:
            if self.backoff_until:  # the backoff just ended: try the database again now
                self.backoff_until = 0.0
                daemon.requests.ask(full=True)
            return False
        daemon.requests.wake.wait(timeout=min(daemon.tick, remaining))
        daemon.requests.wake.clear()  # a busy loop otherwise: the requests themselves are kept
        if daemon.requests.take_reload():
            daemon.reload()
            daemon.status.write()
        return True

    def degraded(self, exc: Exception) -> None:
        """Not a pack's fault (database unreachable, disk full): no database contact until
        the backoff ends, and the status file says so, with when it is tried again."""
        daemon = self.daemon
        daemon.counters.count_pass(ok=False)
        self.db_failures += 1
        settings = daemon.config.reconcile
        delay = backoff(self.db_failures, settings.retry_initial, settings.retry_max)
        daemon.phase = "degraded"
        daemon.error = headline(exc)
        self.backoff_until = time.monotonic() + delay
        daemon.next_retry_at = now() + timedelta(seconds=delay)
        log.error(
            Event.DAEMON_DEGRADED, error=daemon.error, retry_in_s=delay, attempt=self.db_failures
        )
        daemon._close_registry()
        daemon.status.write()

    def recovered(self) -> None:
        if self.db_failures:
            log.info(Event.DAEMON_RECOVERED, attempts=self.db_failures)
        self.db_failures = 0
        self.backoff_until, self.daemon.next_retry_at = 0.0, None

    def after_pass(self, transient: list[StepResult]) -> None:
        """A pack that could not be written (database locked, disk full) is not its fault:
        say so in the phase, and come back when its backoff ends, event or no event."""
        daemon = self.daemon
        self.recovered()
        daemon.error = transient[0].error if transient else None
        daemon.phase = "degraded" if transient else "idle"
        self.retry_transient()
        self.tell_transient(transient)
        daemon.counters.count_pass(ok=True)

    def retry_transient(self) -> None:
        """A pass when the earliest transient failure's backoff ends."""
        failures = self.daemon.memory.failures.values()
        due = [f.retry_at for f in failures if f.kind is FailureKind.TRANSIENT]
        if due:
            self.retry_in(max(min(due) - time.time(), 0.05))

    def retry_in(self, delay: float) -> None:
        if self.retry_timer is not None:
            self.retry_timer.cancel()
        requests = self.daemon.requests
        self.retry_timer = threading.Timer(delay, lambda: requests.ask(full=True))
        self.retry_timer.daemon = True
        self.retry_timer.start()

    def cancel(self) -> None:
        if self.retry_timer is not None:
            self.retry_timer.cancel()

    def tell_transient(self, transient: list[StepResult]) -> None:
        """Packs that could not be written (a locked SQLite database, a full disk) make the
        daemon degraded: logged once as `daemon.degraded` while the same error lasts."""
        error = transient[0].error if transient else None
        failures = self.daemon.memory.failures
        if error is not None and error != self.told_transient:
            due = [f.retry_at for f in failures.values() if f.retry_at]
            log.error(
                Event.DAEMON_DEGRADED,
                error=error,
                retry_in_s=round(max(min(due) - time.time(), 0), 1) if due else None,
                attempt=max(
                    (failures[r.ref].attempts for r in transient if r.ref in failures),
                    default=1,
                ),
                packs=sorted(r.ref for r in transient),
            )
        self.told_transient = error
