"""The database goes away and comes back: the daemon keeps running, says `degraded` with the
error, retries with backoff, and resumes; nothing is half-written."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonProcess
from tests.pgcluster import ThrowawayCluster


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'unused.db'}"  # replaced by the throwaway cluster's URL


def test_postgresql_lost_and_back(
    daemon_factory: Callable[..., DaemonProcess], pg_cluster: ThrowawayCluster
) -> None:
    daemon = daemon_factory()
    daemon.config["database"]["url"] = pg_cluster.create_database("attuned_loss")
    daemon.start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")

    pg_cluster.kill()  # the server dies: connections break mid-flight
    daemon.drop("welcome")
    daemon.signal(signal.SIGUSR1)
    status = daemon.wait_for(lambda s: s["daemon"]["phase"] == "degraded", what="degraded")
    assert status["daemon"]["error"]
    assert daemon.events("daemon.degraded")[0]["retry_in_s"] > 0
    assert daemon.proc is not None and daemon.proc.poll() is None  # still running

    pg_cluster.start()
    daemon.wait_pack("welcome", "active", timeout=60)  # retried by itself, no signal needed
    status = daemon.status()
    assert status["daemon"]["phase"] == "idle" and status["daemon"]["error"] is None
    assert status["packs"]["hello"]["state"] == "active"
    registered = daemon.cli("packs", "--json").stdout
    assert '"ref": "hello"' in registered and '"ref": "welcome"' in registered


def test_a_dead_database_at_start_is_shown_and_retried_with_backoff(
    daemon_factory: Callable[..., DaemonProcess], pg_cluster: ThrowawayCluster
) -> None:
    daemon = daemon_factory(retry_initial=1, retry_max=4)
    daemon.config["database"]["url"] = pg_cluster.create_database("attuned_dead")
    pg_cluster.kill()
    daemon.start(first_pass=False)
    status = daemon.wait_for(lambda s: s["daemon"]["phase"] == "degraded", what="degraded")
    assert status["daemon"]["error"] and status["daemon"]["next_retry_at"]
    time.sleep(6.5)
    # backoff 1, 2, 4 s: four tries in 6.5 s at most (it was one a second), each logged
    tries = daemon.events("daemon.degraded")
    assert 2 <= len(tries) <= 4, [t["retry_in_s"] for t in tries]
    assert [t["retry_in_s"] for t in tries] == [1, 2, 4, 4][: len(tries)]
    started = time.monotonic()
    assert daemon.stop(timeout=20) == 0
    assert time.monotonic() - started <= 10
    assert daemon.status()["daemon"]["phase"] == "stopped"

    pg_cluster.start()  # back: the next daemon starts as if nothing happened
    daemon.start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    assert daemon.status()["daemon"]["next_retry_at"] is None
