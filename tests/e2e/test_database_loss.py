"""The database goes away and comes back: the daemon keeps running, says `degraded` with the
error, retries with backoff, and resumes; nothing is half-written."""

from __future__ import annotations

import signal
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
