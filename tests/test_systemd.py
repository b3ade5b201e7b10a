"""sd_notify against a real datagram socket bound by the test, the heartbeat-driven watchdog
pinger, and the one-line STATUS summary."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from attuned.report.status import DaemonStatus, PackStatus, ReconcileSummary, Status
from attuned.systemd import Notifier, WatchdogPinger, summary_line, watchdog_interval

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


class Listener:
    """What systemd does: a bound Unix datagram socket that receives notifications."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self, timeout: float = 2.0) -> str | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def drain(self) -> list[str]:
        messages = []
        while (message := self.receive(timeout=0.001)) is not None:
            messages.append(message)
        return messages


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
        env_value = address
    else:
        name = f"attuned-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    try:
        yield Listener(sock, env_value)
    finally:
        sock.close()


@pytest.fixture
def notifier(listener: Listener) -> Iterator[Notifier]:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.env_value})
    try:
        yield notifier
    finally:
        notifier.close()


def test_each_notification_is_one_datagram_of_key_value_lines(
    listener: Listener, notifier: Notifier
) -> None:
    assert notifier.enabled
    assert notifier.ready()
    assert listener.receive() == "READY=1"
    assert notifier.status("14 active, 1 failing, last pass 0.3 s ago")
    assert listener.receive() == "STATUS=14 active, 1 failing, last pass 0.3 s ago"
    assert notifier.watchdog()
    assert listener.receive() == "WATCHDOG=1"
    assert notifier.stopping()
    assert listener.receive() == "STOPPING=1"
    assert notifier.ready(status="3 active, 0 failing, last pass 0.1 s ago")
    assert listener.receive() == "READY=1\nSTATUS=3 active, 0 failing, last pass 0.1 s ago"
    assert notifier.extend_timeout(1.5)
    assert listener.receive() == "EXTEND_TIMEOUT_USEC=1500000"


def test_reloading_carries_the_monotonic_clock_in_microseconds(
    listener: Listener, notifier: Notifier
) -> None:
    before = time.monotonic_ns() // 1000
    assert notifier.reloading()
    after = time.monotonic_ns() // 1000
    message = listener.receive()
    assert message is not None
    reloading, monotonic = message.split("\n")
    assert reloading == "RELOADING=1"
    key, _, value = monotonic.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_a_value_cannot_smuggle_another_field(listener: Listener, notifier: Notifier) -> None:
    notifier.status("line one\nREADY=1")
    assert listener.receive() == "STATUS=line one READY=1"
    with pytest.raises(ValueError, match="field name"):
        notifier.send(**{"ready\nREADY": 1})


def test_without_notify_socket_everything_is_a_no_op() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
        notifier = Notifier.from_environment(env)
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.status("x")
        assert not notifier.watchdog()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.enabled
    assert notifier.ready() is False


def test_watchdog_interval_follows_watchdog_usec_and_pid() -> None:
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "300000", "WATCHDOG_PID": me}) == 0.3
    assert watchdog_interval({"WATCHDOG_USEC": "300000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


@pytest.mark.parametrize("listener", ["path"], indirect=True)  # timing, not addressing
def test_pings_flow_while_the_loop_beats_and_stop_when_it_is_stuck(
    listener: Listener, notifier: Notifier
) -> None:
    interval = watchdog_interval({"WATCHDOG_USEC": "300000"})
    assert interval == 0.3
    notifier.ready()
    assert listener.receive() == "READY=1"
    with WatchdogPinger(notifier, interval) as pinger:  # pings every 0.1 s, stale after 0.15 s
        assert (pinger.period, pinger.stale_after) == pytest.approx((0.1, 0.15))
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            pinger.beat()
            time.sleep(0.02)
        healthy = listener.drain()
        assert len(healthy) >= 3
        assert set(healthy) == {"WATCHDOG=1"}

        # the loop is stuck: no beats. Only pings already due within stale_after still come
        stuck_at = time.monotonic()
        late = []
        while (left := stuck_at + 0.6 - time.monotonic()) > 0:
            if listener.receive(timeout=left) is None:
                break
            late.append(time.monotonic() - stuck_at)
        assert len(late) <= 2
        assert all(t < pinger.stale_after + pinger.period + 0.1 for t in late), late
        assert not pinger.fresh

        pinger.beat()  # the loop recovers before systemd gave up: pings resume
        assert listener.receive(timeout=0.5) == "WATCHDOG=1"


@pytest.mark.parametrize("listener", ["path"], indirect=True)  # timing, not addressing
def test_before_ready_each_ping_also_extends_the_start_timeout(
    listener: Listener, notifier: Notifier
) -> None:
    with WatchdogPinger(notifier, 0.3) as pinger:
        assert listener.receive() == "WATCHDOG=1\nEXTEND_TIMEOUT_USEC=300000"
        pinger.beat()
        assert listener.receive() == "WATCHDOG=1\nEXTEND_TIMEOUT_USEC=300000"
        notifier.ready()
        assert listener.receive() == "READY=1"
        pinger.beat()
        assert listener.receive() == "WATCHDOG=1"


def test_staleness_is_measured_on_the_given_clock(notifier: Notifier) -> None:
    clock = [100.0]
    pinger = WatchdogPinger(notifier, 60, clock=lambda: clock[0])
    assert (pinger.period, pinger.stale_after) == (20, 30)
    notifier.ready()
    assert pinger.ping()
    clock[0] += 30.5
    assert not pinger.ping()
    pinger.beat()
    assert pinger.ping()
    assert WatchdogPinger(notifier, 60, stale_after=45, clock=lambda: clock[0]).stale_after == 45
    with pytest.raises(ValueError):
        WatchdogPinger(notifier, 0)


def status(
    phase: str = "idle",
    states: tuple[str, ...] = (),
    finished: datetime | None = NOW - timedelta(milliseconds=300),
    error: str | None = None,
) -> Status:
    last = (
        None
        if finished is None
        else ReconcileSummary(
            started_at=finished - timedelta(seconds=1),
            finished_at=finished,
            duration_ms=1000,
            trigger="full",
        )
    )
    return Status.model_validate(
        {
            "daemon": DaemonStatus.model_validate(
                {
                    "version": "0.1.0",
                    "pid": 1,
                    "started_at": NOW - timedelta(hours=1),
                    "phase": phase,
                    "error": error,
                }
            ),
            "updated_at": NOW,
            "last_reconcile": last,
            "packs": {
                f"p{i}": PackStatus.model_validate({"state": s}) for i, s in enumerate(states)
            },
        }
    )


def test_summary_counts_active_and_failing_packs() -> None:
    packs = ("active",) * 14 + ("failed",)
    assert summary_line(status(states=packs), at=NOW) == "14 active, 1 failing, last pass 0.3 s ago"


def test_summary_counts_blocked_as_failing_and_names_other_states_only_when_present() -> None:
    packs = ("active", "blocked", "failed", "pending", "suspended", "suspended", "removed")
    line = summary_line(status(states=packs, finished=NOW - timedelta(seconds=42)), at=NOW)
    assert line == "1 active, 2 failing, 1 pending, 2 suspended, last pass 42 s ago"


def test_summary_says_the_phase_when_not_idle() -> None:
    assert summary_line(status("starting", finished=None), at=NOW) == (
        "starting: 0 active, 0 failing, no pass yet"
    )
    line = summary_line(status("reconciling", ("kept",), NOW - timedelta(minutes=5)), at=NOW)
    assert line == "reconciling: 0 active, 0 failing, 1 kept, last pass 5 min ago"


def test_summary_says_why_the_daemon_is_degraded() -> None:
    error = "connection refused: is the database at db.example:5432 running? " + "x" * 100
    line = summary_line(status("degraded", ("active",), error=error), at=NOW)
    assert line.startswith("degraded (connection refused: is the database at db.example:5432")
    assert line.endswith("…): 1 active, 0 failing, last pass 0.3 s ago")
    assert len(line) < 140
