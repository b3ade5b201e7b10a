"""The one writer of what the daemon shows: the status file, the metrics, systemd's STATUS.

`attuned status`, Prometheus and `systemctl status` each read one of these; built from the
same Status at the same moment, they cannot disagree with each other.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from attuned import __version__
from attuned.errors import headline
from attuned.report.log import Event, get_logger
from attuned.report.metrics import render_metrics, write_metrics
from attuned.report.status import (
    DaemonStatus,
    PackStatus,
    SinkStatus,
    Status,
    now,
    read_status,
    write_status,
)
from attuned.systemd import summary_line

if TYPE_CHECKING:
    from attuned.reconcile.daemon.loop import Daemon

log = get_logger()


def last_known_packs(status_path: Path) -> dict[str, PackStatus] | None:
    """The packs the previous daemon's status file listed (the store still serves them),
    shown rather than an empty table until the first pass ends; None when there is none."""
    try:
        previous = read_status(status_path)
    except Exception:  # none yet, or unreadable: the first pass fills the table
        return None
    return dict(previous.packs)


class StatusWriter:
    """Reads the daemon's state, never changes it (but for when systemd was last told)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._status_sent_at = 0.0

    def write(self) -> None:
        daemon = self.daemon
        if daemon.delivery.counts_stale():
            daemon.delivery.refresh()  # only here: the file must show what was read
        status = self.status()
        config = daemon.config
        try:
            write_status(config.status_path, status)
        except OSError as exc:
            log.error(
                Event.STATUS_WRITE_FAILED,
                path=str(config.status_path),
                error=exc.strerror or str(exc),
            )
        if config.metrics_file is not None:
            try:
                write_metrics(
                    config.metrics_file, render_metrics(status, daemon.counters.snapshot())
                )
            except OSError as exc:
                log.error(
                    Event.METRICS_WRITE_FAILED,
                    path=str(config.metrics_file),
                    error=exc.strerror or str(exc),
                )
        if daemon.notifier.is_ready:
            daemon.notifier.status(summary_line(status))
            self._status_sent_at = time.monotonic()

    def write_forced(self) -> None:
        """The stop timer's last word: the main thread may be changing the pack table, so
        this is a best effort."""
        try:
            write_status(self.daemon.config.status_path, self.status())
        except Exception as exc:
            log.error(Event.STATUS_WRITE_FAILED, error=headline(exc))

    def tell_systemd(self) -> None:
        """READY=1 once the first pass (or a follower's first sync) is done; STATUS= kept
        current (at least every 10 s)."""
        daemon = self.daemon
        if daemon.last_reconcile is None and daemon.phase != "degraded" and not daemon.synced_once:
            return
        if not daemon.notifier.is_ready:
            daemon.notifier.ready(summary_line(self.status()))
            self._status_sent_at = time.monotonic()
        elif time.monotonic() - self._status_sent_at >= 10:  # built only when sent: on a
            daemon.notifier.status(summary_line(self.status()))  # follower it asks the database
            self._status_sent_at = time.monotonic()

    def status(self) -> Status:
        daemon = self.daemon
        return Status(
            daemon=DaemonStatus(
                version=__version__,
                pid=os.getpid(),
                started_at=daemon.started_at,
                phase=daemon.phase,
                config_file=str(daemon.config.path) if daemon.config.path else None,
                error=daemon.error,
                next_retry_at=daemon.next_retry_at,
                config_reload_failed=daemon.reload_failed,
                role=daemon.role,
                node=daemon.config.cluster.node,
                leader=self._leader_name(),
            ),
            updated_at=now(),
            last_reconcile=daemon.last_reconcile,
            sources=list(daemon.sources.status.values()),
            packs=daemon.packs,
            conflicts=daemon.conflicts,
            notify=self._notify_status(),
        )

    def _leader_name(self) -> str | None:
        daemon = self.daemon
        if not daemon.clustered:
            return daemon.config.cluster.node
        return daemon.cluster.leader_name() if daemon.cluster is not None else None

    def _notify_status(self) -> list[SinkStatus]:
        dispatcher = self.daemon.delivery.dispatcher
        if dispatcher is None:
            return []
        counts, problems = dispatcher.counts(), dispatcher.problems()
        sinks = []
        for config in dispatcher.configs:
            count = counts.get(config.name)
            sinks.append(
                SinkStatus(
                    name=config.name,
                    type=config.type,
                    target=config.target(),
                    dispatching=self.daemon.role == "leader",
                    problem=problems.get(config.name),
                    **(asdict(count) if count else {}),  # pending, delivered, dead, ...
                )
            )
        return sinks
