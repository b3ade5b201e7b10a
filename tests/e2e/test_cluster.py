"""Several daemons, one PostgreSQL: one leader, followers serving byte-identical pack trees,
failover after kill -9, a leader paused between its leadership check and its commit (fenced
out), and a follower catching up after being offline."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import POSTGRES_ENV
from tests.e2e.conftest import DaemonProcess

pytestmark = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV), reason=f"PostgreSQL cluster tests need {POSTGRES_ENV}"
)


@pytest.fixture
def db_url(postgres_url: str) -> str:
    return postgres_url


@pytest.fixture
def shared_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shared-packs"
    folder.mkdir()
    return folder


@pytest.fixture
def node(
    daemon_factory: Callable[..., DaemonProcess], shared_folder: Path
) -> Callable[[str], DaemonProcess]:
    def make(name: str) -> DaemonProcess:
        daemon = daemon_factory(name)
        daemon.folder = shared_folder  # every host offers the same packs (only the leader acts)
        daemon.config["sources"][0]["path"] = str(shared_folder)
        daemon.config["cluster"] = {"node": name, "poll_interval": 0.2, "follower_resync": 5}
        return daemon

    return make


@pytest.fixture
def cluster(node: Callable[[str], DaemonProcess]) -> Iterator[list[DaemonProcess]]:
    yield [node(name).start() for name in ("a", "b", "c")]


def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under a served pack: content and executable bit."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), os.access(p, os.X_OK))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def served_tree(daemon: DaemonProcess, ref: str) -> dict[str, tuple[bytes, bool]]:
    return tree((daemon.root / "state/packs" / ref).resolve())


def leader_of(daemons: list[DaemonProcess]) -> DaemonProcess:
    leaders = [d for d in daemons if d.status().get("daemon", {}).get("role") == "leader"]
    assert len(leaders) == 1, [d.status().get("daemon") for d in daemons]
    return leaders[0]


def wait_one_leader(daemons: list[DaemonProcess], timeout: float = 20) -> DaemonProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles = [d.status().get("daemon", {}).get("role") for d in daemons]
        if roles.count("leader") == 1:
            return leader_of(daemons)
        time.sleep(0.05)
    raise AssertionError(f"no single leader: {roles}")


def query(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return list(conn.execute(sql).fetchall())


def test_one_leader_and_followers_serve_identical_trees(cluster: list[DaemonProcess]) -> None:
    leader = wait_one_leader(cluster)
    names = {d.status()["daemon"]["leader"] for d in cluster}
    assert names == {leader.status()["daemon"]["node"]}
    leader.drop("hello")
    leader.drop("welcome")
    for daemon in cluster:
        daemon.wait_pack("hello", "active", "1.0.0")
        daemon.wait_pack("welcome", "active", "1.2.0")
    for ref in ("hello", "welcome"):
        reference = served_tree(leader, ref)
        assert reference and all(served_tree(d, ref) == reference for d in cluster)
    followers = [d for d in cluster if d is not leader]
    assert all(not d.events("pack.test.started") for d in followers)  # only the leader tests


def test_kill_leader_mid_test_run_new_leader_finishes_once(
    cluster: list[DaemonProcess], db_url: str
) -> None:
    leader = wait_one_leader(cluster)
    slow = "#!/bin/sh\nsleep 3\necho 'Total Tests: 1'\necho 'Passed: 1'\necho 'Failed: 0'\n"
    leader.drop("hello", test_script=slow)
    leader.wait_for(lambda _s: bool(leader.events("pack.test.started")), what="test start")
    leader.kill()
    killed_at = time.monotonic()
    survivors = [d for d in cluster if d is not leader]
    new_leader = wait_one_leader(survivors)
    takeover = time.monotonic() - killed_at
    print(f"\ntakeover after kill -9 of the leader: {takeover:.2f} s")
    for daemon in survivors:
        daemon.wait_pack("hello", "active", "1.0.0", timeout=30)
    assert query(db_url, "SELECT count(*) FROM attune.pack WHERE ref = 'hello'") == [(1,)]
    assert query(db_url, "SELECT count(*) FROM attuned.pack_revision WHERE ref = 'hello'") == [(1,)]
    runs = query(db_url, "SELECT outcome FROM attuned.test_run WHERE pack_ref = 'hello'")
    assert runs == [("registered",)]  # the killed run never committed; the new one did, once
    # and Attune sees that one run, through its own view
    latest = query(
        db_url,
        "SELECT pack_ref, trigger_reason, passed, total_tests FROM attune.pack_latest_test",
    )
    assert latest == [("hello", "install", 1, 1)]  # its slow test: one case
    assert new_leader.events("cluster.leader.elected")


# Loaded by the paused daemon's interpreter at start-up (PYTHONPATH): its `before_commit`
# fault point (the registration checked that it leads and is written, not committed) stops
# the whole process with SIGSTOP instead of killing it, once, as a GC pause or a frozen VM.
# Sent to the calling thread: stopped before it takes one more step (a SIGSTOP sent to the
# process may be taken by another thread, and this one runs on into its commit meanwhile).
PAUSE_AT_COMMIT = """
import os, signal, threading
from pathlib import Path
from attuned import faults

_marker, _point = Path(os.environ["ATTUNED_TEST_PAUSED"]), faults.point

def point(name):
    if name == "before_commit" and not _marker.exists():
        _marker.write_text(str(os.getpid()))
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    _point(name)

faults.point = point
"""


def pause_at_commit(daemon: DaemonProcess) -> Path:
    """Arm `daemon` to stop itself between its leadership check and its COMMIT; the path
    that appears when it did."""
    hooks = daemon.root / "pause-hooks"
    hooks.mkdir(parents=True)
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(PAUSE_AT_COMMIT))
    marker = daemon.root / "paused-at-commit"
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    daemon.env |= {"PYTHONPATH": path, "ATTUNED_TEST_PAUSED": str(marker)}
    return marker


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


def test_leader_paused_before_its_commit_and_deposed_commits_nothing(
    node: Callable[[str], DaemonProcess], db_url: str
) -> None:
    old = node("a")
    marker = pause_at_commit(old)
    old.start()
    wait_one_leader([old])
    new = node("b").start()
    old.drop("hello")
    old.wait_for(lambda _s: marker.exists() and stopped(old.pid), what="paused before commit")
    try:  # the server declares the paused leader's session dead (keepalives, a cut link)
        ended = query(
            db_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'attuned:a'",
        )
        assert ended == [(True,)]
        wait_one_leader([new])  # it took the lead: its own registration waits for the old row
    finally:
        old.signal(signal.SIGCONT)
    new.wait_pack("hello", "active", "1.0.0", timeout=30)
    old.wait_for(lambda s: s["daemon"]["role"] == "follower", what="the old leader following")
    assert not old.events("pack.registered")  # its commit rolled back: nothing to announce
    writers = query(db_url, "SELECT DISTINCT node FROM attuned.outbox_event WHERE ref = 'hello'")
    assert writers == [("b",)]
    runs = query(db_url, "SELECT outcome FROM attuned.test_run WHERE pack_ref = 'hello'")
    assert runs == [("registered",)]  # the new leader's; the old one wrote not even its abort
    assert query(db_url, "SELECT count(*) FROM attune.pack WHERE ref = 'hello'") == [(1,)]
    lost = old.events("cluster.leadership.lost")
    assert [e.get("fenced") for e in lost] == [True], lost
    assert "commit refused" in lost[0]["error"]
    old.wait_pack("hello", "active", "1.0.0")  # and, following, it serves what b registered


def test_follower_offline_during_three_upgrades_catches_up(
    node: Callable[[str], DaemonProcess],
) -> None:
    leader = node("a").start()
    wait_one_leader([leader])
    follower = node("b").start()
    leader.drop("hello")
    follower.wait_pack("hello", "active", "1.0.0")
    assert follower.stop() == 0
    for version in ("1.1.0", "1.2.0", "1.3.0"):
        leader.drop("hello", version=version)
        leader.wait_pack("hello", "active", version)
    follower.start()
    follower.wait_pack("hello", "active", "1.3.0")
    assert served_tree(follower, "hello") == served_tree(leader, "hello")
    assert follower.status()["daemon"]["role"] == "follower"


def test_only_the_leader_delivers_events_and_a_new_leader_takes_over_the_queue(
    node: Callable[[str], DaemonProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.notify.receiver import SECRET, Receiver, serve

    monkeypatch.setenv("ATTUNED_TEST_WEBHOOK_SECRET", SECRET)
    with serve(Receiver()) as receiver:
        daemons = []
        for name in ("a", "b"):
            daemon = node(name)
            daemon.config["notify"] = [
                {
                    "name": "ci",
                    "type": "webhook",
                    "url": receiver.url,
                    "secret_env": "ATTUNED_TEST_WEBHOOK_SECRET",
                }
            ]
            daemons.append(daemon.start())
        leader = wait_one_leader(daemons)
        [follower] = [d for d in daemons if d is not leader]
        leader.drop("hello")
        receiver.wait_for(3)  # leadership taken, hello tested and registered
        follower.wait_for(lambda s: s["notify"] and s["notify"][0]["delivered"] == 3, what="counts")
        assert follower.status()["notify"][0]["dispatching"] is False
        assert leader.status()["notify"][0]["dispatching"] is True

        leader.kill()
        wait_one_leader([follower])
        leader.drop("welcome")
        received = receiver.wait_for(6)
        time.sleep(1)  # nothing more comes: no event twice from two dispatchers
    names = [(r.event["event"], r.event["node"]) for r in receiver.received]
    lead = leader.config["cluster"]["node"]
    assert names[0] == ("cluster.leader.elected", lead)
    assert ("cluster.leader.elected", follower.config["cluster"]["node"]) in names
    assert len(receiver.ids()) == len(set(receiver.ids())) == len(received) == 6
