"""Under load the daemon loses no pack: an inotify queue overflow, 200 packs dropped in one
second, drops while a long pass runs. Each test prints the figures docs/reliability.md
records (run with -s to see them)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess

PASSING = "#!/bin/sh\necho 'Total Tests: 1'\necho 'Passed: 1'\necho 'Failed: 0'\n"
SLOW_PASSING = "#!/bin/sh\nsleep 3\n" + PASSING.removeprefix("#!/bin/sh\n")
MAX_QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")
LOW_QUEUE = 64  # far below the thousands of events the flood makes
NOISE = 2000


def write_pack(
    target: Path, ref: str, version: str, *, test_script: str = PASSING, payload: int = 3
) -> Path:
    """A minimal pack: pack.yaml, one script test and a few action scripts (files without
    a component definition, so no component ref clashes between the many copies)."""
    (target / "tests").mkdir(parents=True)
    (target / "actions").mkdir()
    manifest = {
        "ref": ref,
        "label": ref,
        "description": "load test",
        "version": version,
        "testing": {"runners": {"t": {"type": "script", "entry_point": "tests/run.sh"}}},
    }
    (target / "pack.yaml").write_text(yaml.safe_dump(manifest))
    (target / "tests/run.sh").write_text(test_script)
    (target / "tests/run.sh").chmod(0o755)
    for n in range(payload):
        (target / "actions" / f"a{n}.sh").write_text(f"#!/bin/sh\necho {ref} {n}\n")
    return target


def drop_pack(daemon: DaemonProcess, ref: str, version: str, **kwargs: Any) -> None:
    """Build under a dot-name in the watched folder, then rename into place (atomic)."""
    staging = write_pack(daemon.folder / f".{ref}", ref, version, **kwargs)
    staging.rename(daemon.folder / ref)


def stage_outside(stage: Path, versions: dict[str, str], **kwargs: Any) -> None:
    """Packs built beside the watched folder (same filesystem), ready to be renamed in."""
    for ref, version in versions.items():
        write_pack(stage / ref, ref, version, **kwargs)


def all_active(versions: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
    def ok(status: dict[str, Any]) -> bool:
        packs = status.get("packs", {})
        return all(
            packs.get(ref, {}).get("state") == "active" and packs[ref]["version"] == version
            for ref, version in versions.items()
        )

    return ok


def when(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def backend(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


def index_of(events: list[dict[str, Any]], name: str) -> list[int]:
    return [i for i, event in enumerate(events) if event.get("event") == name]


# -- 1. an overflow of the kernel's queue ------------------------------------------------------


@pytest.fixture
def low_inotify_queue() -> Iterator[Callable[[], None]]:
    """Lowers fs.inotify.max_queued_events (the kernel reads it when an inotify instance is
    made: lower it before the daemon starts). Yields `restore`, which the test calls as soon
    as the daemon's watches exist, so that other processes on the host keep the normal
    limit; restored here whatever happens."""
    try:
        old = MAX_QUEUED_EVENTS.read_text().strip()
        MAX_QUEUED_EVENTS.write_text(str(LOW_QUEUE))
    except OSError as exc:
        pytest.skip(f"cannot lower {MAX_QUEUED_EVENTS} (needs root, not in a container): {exc}")

    def restore() -> None:
        MAX_QUEUED_EVENTS.write_text(old)

    try:
        yield restore
    finally:
        restore()


def flood(daemon: DaemonProcess, stage: Path, refs: list[str]) -> int:
    """Thousands of events while the daemon is stopped (SIGSTOP: a starved host, a long GC
    pause), so the kernel keeps only the first LOW_QUEUE of them: noise files made in an
    ignored dot-folder, then the packs renamed in from the stage, then the noise renamed.
    The drops' own events are certainly lost; only a rescan can find those packs.
    Returns the number of filesystem operations made."""
    noise = daemon.folder / ".noise"
    daemon.signal(signal.SIGSTOP)
    try:
        for i in range(NOISE):
            (noise / f"n{i}").touch()
        for ref in refs:
            (stage / ref).rename(daemon.folder / ref)
        for i in range(NOISE):
            os.rename(noise / f"n{i}", noise / f"n{i}.moved")
    finally:
        daemon.signal(signal.SIGCONT)
    return 2 * NOISE + len(refs)


def test_an_inotify_overflow_triggers_a_full_pass_and_loses_no_pack(
    daemon_factory: Callable[..., DaemonProcess],
    low_inotify_queue: Callable[[], None],
    tmp_path: Path,
    db_url: str,
) -> None:
    daemon = daemon_factory()
    (daemon.folder / ".noise").mkdir()
    daemon.start()  # its inotify instance now has a queue of LOW_QUEUE events
    low_inotify_queue()  # the rebuilt watches (and everyone else) get the normal queue
    versions = {f"flood{i}": f"1.0.{i}" for i in range(30)}
    stage = tmp_path / "stage"
    stage_outside(stage, versions, payload=20)

    started = time.monotonic()
    operations = flood(daemon, stage, sorted(versions))
    daemon.wait_for(all_active(versions), timeout=60, what="all 30 flooded packs active")
    took = time.monotonic() - started

    events = daemon.events()
    overflows = index_of(events, "source.watch.overflow")
    assert overflows, "no source.watch.overflow logged"
    full_after = [
        i
        for i in index_of(events, "reconcile.started")
        if i > overflows[0] and events[i]["trigger"] == "full"
    ]
    assert full_after, "no full pass followed the overflow"
    packs = daemon.status()["packs"]
    assert sorted(packs) == sorted(versions)  # none lost, nothing else served
    for ref, version in versions.items():
        assert (daemon.root / "state/packs" / ref / "pack.yaml").is_file()
        assert packs[ref]["version"] == version
    registered = [e["pack"] for e in daemon.events("pack.registered")]
    assert sorted(registered) == sorted(versions)  # each once
    passes = len(index_of(events, "reconcile.finished")) - 1  # after the first one
    print(
        f"\n[load] overflow ({backend(db_url)}): {operations} file operations, "
        f"overflows={len(overflows)}, passes={passes}, flood start to 30 active={took:.1f}s"
    )


# -- 2. 200 packs in one second ----------------------------------------------------------------


@pytest.mark.parametrize("tested", [True, False], ids=["tested", "skip_tests"])
def test_200_packs_dropped_in_one_second_all_end_active(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path, db_url: str, tested: bool
) -> None:
    daemon = daemon_factory()
    daemon.config["sources"][0]["skip_tests"] = not tested
    daemon.start()
    versions = {f"burst{i:03}": f"2.0.{i}" for i in range(200)}
    stage = tmp_path / "stage"
    stage_outside(stage, versions)
    passes_before = len(daemon.events("reconcile.finished"))

    started = time.monotonic()
    for ref in versions:
        (stage / ref).rename(daemon.folder / ref)
    dropped_in = time.monotonic() - started
    assert dropped_in < 1.0
    daemon.wait_for(all_active(versions), timeout=60, what="all 200 packs active")
    took = time.monotonic() - started

    assert sorted(daemon.status()["packs"]) == sorted(versions)
    registered = [e["pack"] for e in daemon.events("pack.registered")]
    assert sorted(registered) == sorted(versions)  # each once
    tests_run = [e["pack"] for e in daemon.events("pack.test.finished")]
    assert sorted(tests_run) == (sorted(versions) if tested else [])
    passes = len(daemon.events("reconcile.finished")) - passes_before
    print(
        f"\n[load] burst ({backend(db_url)}, {'tested' if tested else 'skip_tests'}): dropped "
        f"in {dropped_in * 1000:.0f} ms, first drop to 200 active={took:.1f}s, passes={passes}"
    )


# -- 3. drops during a long pass ---------------------------------------------------------------


def slow_pass_under_way(status: dict[str, Any]) -> bool:
    slow = status.get("packs", {}).get("slow", {})
    return bool(status["daemon"]["phase"] == "reconciling" and slow.get("state") == "pending")


def test_drops_during_a_long_pass_are_taken_by_the_next_pass(
    daemon_factory: Callable[..., DaemonProcess], db_url: str
) -> None:
    daemon = daemon_factory()
    daemon.start()
    drop_pack(daemon, "slow", "1.0.0", test_script=SLOW_PASSING)
    daemon.wait_for(slow_pass_under_way, what="the slow pack's pass under way")
    drop_pack(daemon, "late1", "1.0.0")
    drop_pack(daemon, "late2", "1.0.0")
    assert daemon.pack("slow")["state"] == "pending"  # type: ignore[index]  # still in its pass

    daemon.wait_for(
        all_active({"slow": "1.0.0", "late1": "1.0.0", "late2": "1.0.0"}),
        timeout=30,
        what="the slow pack and both late drops active",
    )
    events = daemon.events()
    registered = {e["pack"]: i for i, e in enumerate(events) if e["event"] == "pack.registered"}
    finished = index_of(events, "reconcile.finished")
    slow_pass_end = min(i for i in finished if i > registered["slow"])
    assert registered["late1"] > slow_pass_end and registered["late2"] > slow_pass_end
    later_pass = max(i for i in index_of(events, "reconcile.started") if i < registered["late1"])
    assert later_pass > slow_pass_end  # a pass of its own, asked by inotify, not by a signal
    assert events[later_pass]["trigger"].startswith("change:")
    late_end = min(i for i in finished if i > registered["late2"])
    after = when(events[late_end]) - when(events[slow_pass_end])
    print(
        f"\n[load] long pass ({backend(db_url)}): slow pass "
        f"{events[slow_pass_end]['duration_ms']} ms; late drops active {after:.2f}s after it ended"
    )
