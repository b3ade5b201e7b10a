"""sd_notify without libsystemd, and a watchdog pinger driven by the main loop's heartbeat.

The protocol is one datagram of `KEY=value` lines to the Unix socket named by $NOTIFY_SOCKET
(`@name` is an abstract socket). Outside systemd the variable is unset and every call is a
no-op, so the daemon calls the notifier unconditionally.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from attuned.durations import ago
from attuned.report.status import Status

_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")


def _address(value: str) -> str | None:
    """The sendto() address for $NOTIFY_SOCKET; None for kinds we do not speak (vsock:...)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends notifications to systemd; does nothing when not started by it."""

    def __init__(self, notify_socket: str | None) -> None:
        self.notify_socket = notify_socket or None
        self._address = _address(notify_socket) if notify_socket else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self.is_ready = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """One datagram with `KEY=value` lines; False when disabled or the send failed.

        A failed notification must never take the daemon down, hence no exception.
        """
        if self._address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            if not _KEY.fullmatch(key):
                raise ValueError(f"not a notification field name: {key!r}")
            lines.append(f"{key}={' '.join(str(value).splitlines())}")
        message = "\n".join(lines).encode()
        try:
            with self._lock:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.sendto(message, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (systemd then starts the watchdog and ExecStartPost=)."""
        self.is_ready = True
        return self.send(READY=1, **({"STATUS": status} if status is not None else {}))

    def status(self, text: str) -> bool:
        """The one line `systemctl status` shows."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Push the start (or stop) timeout: the next message must come within `seconds`."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def reloading(self) -> bool:
        """A reload began; MONOTONIC_USEC lets systemd tell this reload from an older one."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds from $WATCHDOG_USEC, or None when the watchdog is off or meant for another pid."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec / 1_000_000


class WatchdogPinger:
    """Pings the watchdog every interval/3, but only while the main loop keeps beating.

    Pinging from a timer alone would keep a deadlocked daemon alive; tying pings to `beat()`
    makes a stuck loop stop them, so systemd kills and restarts the service. Before
    `Notifier.ready()`, each ping also extends the start timeout: a slow but live first pass
    (pack tests can take minutes) is not killed, a stuck one is.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float,
        *,
        stale_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("the watchdog interval must be positive")
        self.notifier = notifier
        self.interval = interval
        self.period = interval / 3
        self.stale_after = interval / 2 if stale_after is None else stale_after
        self._clock = clock
        self._last_beat = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """The main loop is alive; call it at least every `stale_after` seconds."""
        self._last_beat = self._clock()

    @property
    def fresh(self) -> bool:
        return self._clock() - self._last_beat <= self.stale_after

    def start(self) -> WatchdogPinger:
        if self._thread is None:
            self.beat()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> WatchdogPinger:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def ping(self) -> bool:
        """One ping if the heartbeat is fresh; the thread calls this every period."""
        if not self.fresh:
            return False
        if self.notifier.is_ready:
            return self.notifier.watchdog()
        return self.notifier.send(WATCHDOG=1, EXTEND_TIMEOUT_USEC=int(self.interval * 1_000_000))

    def _run(self) -> None:
        while True:
            self.ping()
            if self._stop.wait(self.period):
                return


_MENTIONED_WHEN_ANY = ("pending", "suspended", "kept")


def summary_line(status: Status, *, at: datetime | None = None) -> str:
    """The STATUS= line: '14 active, 1 failing, last pass 0.3 s ago' ('failing': failed or
    blocked), prefixed with the phase when it is not idle, and the error when degraded."""
    counts: dict[str, int] = {}
    for pack in status.packs.values():
        counts[pack.state] = counts.get(pack.state, 0) + 1
    parts = [
        f"{counts.get('active', 0)} active",
        f"{counts.get('failed', 0) + counts.get('blocked', 0)} failing",
    ]
    parts += [f"{counts[state]} {state}" for state in _MENTIONED_WHEN_ANY if counts.get(state)]
    if status.last_reconcile is None:
        parts.append("no pass yet")
    else:
        moment = at if at is not None else datetime.now(UTC)
        seconds = (moment - status.last_reconcile.finished_at).total_seconds()
        parts.append(f"last pass {ago(seconds)} ago")
    line = ", ".join(parts)
    phase = status.daemon.phase
    if phase == "degraded":
        error = status.daemon.error or "unknown error"
        error = error if len(error) <= 80 else error[:79] + "…"
        return f"degraded ({error}): {line}"
    if phase != "idle":
        return f"{phase}: {line}"
    return line
