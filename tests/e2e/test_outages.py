"""Outages the daemon must ride out: a locked SQLite database, a full disk while it
snapshots. It stays up, says what is wrong, loses no working pack, and recovers alone."""

from __future__ import annotations

import resource
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PASSING_TEST
from tests.e2e.conftest import DaemonProcess


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite: the lock is SQLite's; PostgreSQL outages are in test_database_loss.py."""
    return f"sqlite:///{tmp_path / 'attuned.db'}"


def test_locked_sqlite_database_degrades_then_recovers(
    daemon_factory: Callable[..., DaemonProcess], db_url: str, tmp_path: Path
) -> None:
    daemon = daemon_factory()
    daemon.config["database"]["busy_timeout"] = 0.5
    daemon.start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        daemon.drop("failing", test_script=PASSING_TEST)
        status = daemon.wait_for(lambda s: s["daemon"]["phase"] == "degraded", what="degraded")
        assert "locked" in (status["daemon"]["error"] or "")
        assert status["packs"]["hello"]["state"] == "active"  # the working pack is untouched
        # the waiting pack is listed with why, and alerts built on the log see the outage
        waiting = status["packs"]["failing"]
        assert waiting["state"] == "pending" and "locked" in waiting["reason"]
        [told] = daemon.events("daemon.degraded")
        assert told["packs"] == ["failing"] and "locked" in told["error"]
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    daemon.wait_pack("failing", "active", timeout=30)  # retried by itself after the backoff
    assert daemon.status()["daemon"]["phase"] == "idle"


def test_disk_full_while_snapshotting_is_a_clean_error(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    limit = 2 * 1024 * 1024  # no file the daemon writes may grow past 2 MiB: "disk full"
    daemon.preexec = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    daemon.start()
    daemon.drop("hello")
    # the blob is in the pack when it is dropped: written after the rename, it raced the
    # watcher adding watches for the new directories (seen once in a full CI run)
    big = daemon.drop(
        "failing", test_script=PASSING_TEST, files={"actions/blob.bin": b"x" * (3 * 1024 * 1024)}
    )
    daemon.wait_pack("hello", "active")
    status = daemon.wait_for(
        lambda s: any(i["entry"] == "failing" for i in s["sources"][0]["invalid"]),
        what="the oversized pack reported",
    )
    [entry] = [i for i in status["sources"][0]["invalid"] if i["entry"] == "failing"]
    assert "too large" in " ".join(entry["problems"]).lower()
    # listed in the packs table as invalid, with the why (it never served)
    failing = status["packs"]["failing"]
    assert (failing["state"], failing["version"]) == ("invalid", None)
    assert "too large" in failing["reason"].lower()
    snapshots = daemon.root / "state/snapshots"
    leftovers = [p for p in snapshots.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no partial copy is kept, or used
    assert all((p / "pack.yaml").is_file() for p in snapshots.iterdir())
    assert daemon.proc is not None and daemon.proc.poll() is None
    # room again (the blob goes away): the pack goes through
    (big / "actions/blob.bin").unlink()
    daemon.wait_pack("failing", "active", timeout=30)


def test_a_stop_while_the_database_is_locked_ends_within_ten_seconds(
    daemon_factory: Callable[..., DaemonProcess], db_url: str
) -> None:
    daemon = daemon_factory()
    daemon.config["database"]["busy_timeout"] = 60  # the pass would wait a minute
    daemon.start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        daemon.drop("failing", test_script=PASSING_TEST)
        # listed as soon as planned: the pass is now waiting on the lock to register it
        daemon.wait_pack("failing", "pending")
        time.sleep(1)
        started = time.monotonic()
        assert daemon.stop(timeout=20) == 0
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert took <= 10, f"stop took {took:.1f} s"
    [forced] = daemon.events("daemon.stop.forced")
    assert forced["phase"] == "reconciling"
    assert daemon.status()["daemon"]["phase"] == "stopped"
    # nothing half-written: the next daemon serves hello and registers the new pack
    daemon.start()
    daemon.wait_pack("failing", "active")
    assert daemon.status()["packs"]["hello"]["state"] == "active"
