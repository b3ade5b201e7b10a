"""The debouncer: one call per burst, and keys that settle together come together."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from attuned.reconcile.daemon.debounce import Debouncer


class Calls:
    def __init__(self) -> None:
        self.calls: list[list[Hashable]] = []
        self.event = threading.Event()

    def __call__(self, keys: list[Hashable]) -> None:
        self.calls.append(sorted(keys, key=str))
        self.event.set()

    def wait(self, count: int, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.01)


def test_a_burst_of_events_for_one_key_is_one_call_after_the_quiet_period() -> None:
    calls = Calls()
    debouncer = Debouncer(0.2, calls)
    try:
        started = time.monotonic()
        for _ in range(50):
            debouncer.touch("hello")
            time.sleep(0.005)
        calls.wait(1)
        assert calls.calls == [["hello"]]
        assert time.monotonic() - started >= 0.2 + 50 * 0.005
        time.sleep(0.3)
        assert calls.calls == [["hello"]]
    finally:
        debouncer.stop()


def test_keys_that_settle_together_come_in_one_call() -> None:
    """Two packs renamed into the folder a moment apart are planned in one pass, so their
    tests can run side by side."""
    calls = Calls()
    debouncer = Debouncer(0.2, calls, coalesce=0.05)
    try:
        debouncer.touch("hello")
        time.sleep(0.01)
        debouncer.touch("core")
        calls.wait(1)
        time.sleep(0.3)
        assert calls.calls == [["core", "hello"]]
    finally:
        debouncer.stop()


def test_keys_that_settle_apart_come_apart() -> None:
    calls = Calls()
    debouncer = Debouncer(0.1, calls, coalesce=0.01)
    try:
        debouncer.touch("hello")
        time.sleep(0.15)
        debouncer.touch("core")
        calls.wait(2)
        assert calls.calls == [["hello"], ["core"]]
    finally:
        debouncer.stop()


def test_by_default_keys_quiet_for_half_the_period_come_along() -> None:
    """The watcher can deliver the second of two renames made together tens of milliseconds
    late (it is adding watches for the first pack's directories): still one pass."""
    calls = Calls()
    debouncer = Debouncer(0.4, calls)
    try:
        debouncer.touch("hello")
        time.sleep(0.05)
        debouncer.touch("core")  # due 50 ms after hello: within half the period
        calls.wait(1)
        time.sleep(0.5)
        assert calls.calls == [["core", "hello"]]
        debouncer.touch("hello")
        time.sleep(0.35)
        debouncer.touch("core")  # quiet for only 50 ms when hello is due: not with it
        calls.wait(3)
        assert calls.calls[1:] == [["hello"], ["core"]]
    finally:
        debouncer.stop()
