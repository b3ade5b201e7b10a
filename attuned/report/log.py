"""The structured log stream: structlog set-up and the stable event names.

Every line is one JSON object with an `event` from `Event`; docs/log-events.md lists them.
Tracebacks are rendered without local variables so secrets never reach the log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import structlog


class Event(StrEnum):
    PACK_REGISTERED = "pack.registered"
    PACK_UPGRADED = "pack.upgraded"
    PACK_REINSTALLED = "pack.reinstalled"
    PACK_REGISTER_FAILED = "pack.register.failed"
    PACK_VALIDATION_WARNING = "pack.validation.warning"
    PACK_REGISTRATION_WARNING = "pack.registration.warning"
    PACK_RUNTIME_LINKED = "pack.runtime.linked"
    PACK_TEST_STARTED = "pack.test.started"
    PACK_TEST_FINISHED = "pack.test.finished"
    PACK_TEST_FAILED = "pack.test.failed"
    PACK_TEST_REGRESSED = "pack.test.regressed"
    PACK_TEST_FLAKY = "pack.test.flaky"
    PACK_TEST_SLOWER = "pack.test.slower"
    PACK_FORCED = "pack.forced"
    PACK_ROLLED_BACK = "pack.rolled_back"
    PACK_UNREGISTERED = "pack.unregistered"
    PACK_REMOVED = "pack.removed"
    PACK_FAILED = "pack.failed"
    PACK_PLANNED = "pack.planned"
    PACK_BLOCKED = "pack.blocked"
    PACK_CONFLICT = "pack.conflict"
    PACK_DRIFT_REPAIRED = "pack.drift.repaired"
    PACK_DRIFT_DETECTED = "pack.drift.detected"
    PACK_SUSPENDED = "pack.suspended"
    PACK_RESUMED = "pack.resumed"
    SOURCE_SCANNED = "source.scanned"
    SOURCE_FETCHED = "source.fetched"
    SOURCE_TRIGGERED = "source.triggered"
    SOURCE_ERROR = "source.error"
    SOURCE_VERIFICATION_FAILED = "source.verification.failed"
    SOURCE_WATCH_FAILED = "source.watch.failed"
    SOURCE_WATCH_OVERFLOW = "source.watch.overflow"
    RECONCILE_STARTED = "reconcile.started"
    RECONCILE_FINISHED = "reconcile.finished"
    CLUSTER_LEADER_ELECTED = "cluster.leader.elected"
    CLUSTER_LEADERSHIP_LOST = "cluster.leadership.lost"
    CLUSTER_SYNCED = "cluster.synced"
    DAEMON_STARTED = "daemon.started"
    DAEMON_RELOADED = "daemon.reloaded"
    DAEMON_RELOAD_FAILED = "daemon.reload.failed"
    DAEMON_STOPPING = "daemon.stopping"
    DAEMON_STOPPED = "daemon.stopped"
    DAEMON_DEGRADED = "daemon.degraded"
    DAEMON_RECOVERED = "daemon.recovered"
    DAEMON_STOP_FORCED = "daemon.stop.forced"
    STORE_REPAIRED = "store.repaired"
    STATUS_WRITE_FAILED = "status.write.failed"
    STATCACHE_LOADED = "statcache.loaded"
    STATCACHE_IGNORED = "statcache.ignored"
    STATCACHE_WRITE_FAILED = "statcache.write.failed"
    TESTING_SANDBOX_UNAVAILABLE = "testing.sandbox.unavailable"
    ENV_CREATED = "env.created"
    ENV_FAILED = "env.failed"
    ENV_REMOVED = "env.removed"
    ENV_RUNTIME_MISSING = "env.runtime.missing"
    METRICS_WRITE_FAILED = "metrics.write.failed"
    NOTIFY_DELIVERED = "notify.delivered"
    NOTIFY_RETRY = "notify.retry"
    NOTIFY_DEAD = "notify.dead"
    NOTIFY_SINK_FAILED = "notify.sink.failed"
    NOTIFY_RECORD_FAILED = "notify.record.failed"
    NOTIFY_REDELIVERED = "notify.redelivered"
    DB_MIGRATED = "db.migrated"
    DB_CONVERTED = "db.converted"
    LIBRARY_LOG = "library.log"


class _LibraryRecords(logging.Handler):
    """Log records of the libraries (watchdog, apscheduler, alembic ...) as JSON lines with
    one stable event, instead of plain text in the middle of the stream."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            get_logger().log(
                record.levelno,
                Event.LIBRARY_LOG,
                logger=record.name,
                message=record.getMessage(),
            )
        except Exception:  # a broken record must not break the daemon
            self.handleError(record)


class ReopeningFile:
    """An append-only log file that follows logrotate: when the path no longer names the file
    we hold (moved or deleted), the next write reopens it, like logging.WatchedFileHandler."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self._open()

    def _open(self) -> TextIO:
        return self.path.open("a", encoding="utf-8")

    def _moved(self) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._handle.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino)

    def write(self, text: str) -> int:
        if self._moved():
            self._handle.close()
            self._handle = self._open()
        return self._handle.write(text)

    def flush(self) -> None:
        self._handle.flush()

    def isatty(self) -> bool:
        return False


class _Tee:
    """Each log line to the main stream (stdout/journald) and to the log file."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def configure_logging(
    level: str = "info",
    stream: TextIO | None = None,
    json: bool | None = None,
    file: Path | None = None,
) -> None:
    """JSON lines (default when `stream` is not a terminal), else a readable console form;
    with `file`, the same lines (always JSON) are appended there too."""
    stream = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not stream.isatty()
    if file is not None:
        as_json = True  # one format for both: files are read by machines
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks
            if as_json
            else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(
            _Tee(stream, ReopeningFile(file)) if file is not None else stream  # type: ignore[arg-type]
        ),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _LibraryRecords)]
    root.addHandler(_LibraryRecords(logging.WARNING))
    root.setLevel(logging.WARNING)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("attuned", **bound)


# the daemon's hook that turns a log event into an outbox event: (event, fields, stable key)
Announce = Callable[[Event, dict[str, Any], str | None], None]


def _unheard(_event: Event, _fields: dict[str, Any], _stable: str | None) -> None:
    return None


class ConditionLog:
    """Log a standing condition (blocked, conflict, invalid) when it appears or changes,
    not on every pass: a pack blocked for a day must not write a line every 5 minutes.

    `announce` is told the same, and is how the scanning and checking parts of the daemon
    also put events (source.error, pack.drift.repaired) in the outbox."""

    def __init__(self, announce: Announce = _unheard) -> None:
        self._reasons: dict[str, str] = {}
        self.announce = announce

    def report(self, key: str, event: Event, **fields: Any) -> None:
        reason = str(fields.get("reason"))
        if self._reasons.get(key) != reason:
            self._reasons[key] = reason
            get_logger().warning(event, **fields)
            self.announce(event, fields, f"{key}\x1f{reason}")

    def tell(self, level: str, event: Event, **fields: Any) -> None:
        """Log a change that happens once (a source fetched, drift repaired), at `level`,
        and hand it to `announce` too."""
        getattr(get_logger(), level)(event, **fields)
        self.announce(event, fields, None)
