"""A stop that cannot hang: the daemon exits at `reconcile.stop_timeout` whatever it waits on.

A pass waiting on a locked or unreachable database is given up after `reconcile.stop_timeout`
seconds, and the process exits 0 as a crash would at that instant (what was not committed is
rolled back by the database; the store never depends on an uncommitted transaction), before
systemd's TimeoutStopSec kills it mid-write.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from attuned.report.log import Event, get_logger
from attuned.report.status import now

if TYPE_CHECKING:
    from attuned.reconcile.daemon.loop import Daemon

log = get_logger()


class StopTimer:
    """Armed by the first stop signal; fires only when the orderly stop takes too long."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Started by the first SIGTERM/SIGINT; later ones change nothing."""
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.daemon.config.reconcile.stop_timeout, self._force_stop)
        self._timer.daemon = True
        self._timer.start()

    def _force_stop(self) -> None:
        daemon = self.daemon
        log.warning(
            Event.DAEMON_STOP_FORCED,
            waited_s=daemon.config.reconcile.stop_timeout,
            phase=daemon.phase,
            action="exiting without waiting: the transaction in flight is rolled back",
        )
        daemon.phase, daemon.next_retry_at = "stopped", None
        daemon.status.write_forced()  # the main thread may be changing the pack table
        daemon.notifier.stopping()
        uptime = (now() - daemon.started_at).total_seconds()
        log.info(Event.DAEMON_STOPPED, uptime_s=round(uptime, 1))
        os._exit(0)
