"""sd_notify from the real daemon: READY after the first pass, STATUS, WATCHDOG only while
the main loop is healthy, RELOADING on SIGHUP, STOPPING on shutdown."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import POSTGRES_ENV
from tests.e2e.conftest import DaemonProcess


class NotifySocket:
    """The systemd side: a datagram socket that records every message with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in list(self.messages) if key in m]

    def wait_for(
        self, key: str, after: float = 0.0, timeout: float = 20, containing: str = ""
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for t, m in self.with_key(key) if t >= after and containing in m[key]]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no {key} after {after}: {self.messages[-5:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def notified_daemon(factory: Callable[..., DaemonProcess], notify: NotifySocket) -> DaemonProcess:
    daemon = factory()
    # WATCHDOG_USEC 0.6 s: a ping every 0.2 s, silence after 0.3 s without a heartbeat
    daemon.env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000"}
    return daemon.start()


def test_ready_status_watchdog_reloading_stopping(
    daemon_factory: Callable[..., DaemonProcess], notify: NotifySocket
) -> None:
    daemon = notified_daemon(daemon_factory, notify)
    ready = notify.wait_for("READY")
    assert (
        (ready["READY"] == "1" and "active" in ready.get("STATUS", ""))
        or "0 packs" in ready.get("STATUS", "")
        or ready.get("STATUS")
    )
    started = time.monotonic()
    time.sleep(1.0)
    pings = [t for t, _m in notify.with_key("WATCHDOG") if t >= started]
    assert len(pings) >= 3  # every ~0.2 s while idle and healthy
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    notify.wait_for("STATUS", containing="1 active, 0 failing", timeout=5)
    before = time.monotonic()
    sent_at_us = time.monotonic_ns() // 1000
    daemon.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", after=before)
    assert abs(int(reloading["MONOTONIC_USEC"]) - sent_at_us) < 5_000_000
    assert notify.wait_for("READY", after=before)["READY"] == "1"
    stop_at = time.monotonic()
    assert daemon.stop() == 0
    assert notify.wait_for("STOPPING", after=stop_at)["STOPPING"] == "1"


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"needs {POSTGRES_ENV}")
def test_watchdog_pings_stop_while_the_loop_is_stuck(
    daemon_factory: Callable[..., DaemonProcess], notify: NotifySocket, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the stuck loop is made with a PostgreSQL table lock")
    daemon = notified_daemon(daemon_factory, notify)
    notify.wait_for("READY")
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            "LOCK TABLE attune.pack IN ACCESS EXCLUSIVE MODE"
        )  # the next pass blocks on it
        daemon.signal(signal.SIGUSR1)
        time.sleep(0.6)  # the pass starts, reads, and hangs
        quiet_from = time.monotonic()
        time.sleep(1.5)
        assert [t for t, _m in notify.with_key("WATCHDOG") if t >= quiet_from] == []
        assert daemon.status()["daemon"]["phase"] == "reconciling"
    resumed = time.monotonic()  # lock released with the transaction
    notify.wait_for("WATCHDOG", after=resumed, timeout=10)
    daemon.wait_for(lambda s: s["daemon"]["phase"] == "idle", what="idle again")
