"""Fencing on a real PostgreSQL: a leader deposed between its leadership check and its COMMIT
writes nothing, a new leader waits for a commit already past its fence (and ends one stuck
there), a transaction of an older reign of the same node is refused, a follower writes nothing.

Two nodes share one database here, each with its own registry, pack store and election (the
daemon's parts, in one process), so a leader can be paused exactly inside its transaction.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from structlog.testing import capture_logs

from attuned.cluster.archives import announce
from attuned.cluster.leader import FencedOut, NotLeader
from attuned.cluster.role import ClusterRole
from attuned.config import AttunedConfig
from attuned.registry import Registry
from tests.conftest import POSTGRES_ENV, PackFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"fencing needs {POSTGRES_ENV}"),
]

CHECK_TIMEOUT = 1.0  # the new leader's barrier waits half of it
# every table a registration of `hello` writes, Attune's and attuned's
WRITTEN = {
    "attune.pack": "ref = 'hello'",
    "attuned.managed_pack": "ref = 'hello'",
    "attuned.pack_revision": "ref = 'hello'",
    "attuned.test_run": "pack_ref = 'hello'",
    "attuned.outbox_event": "ref = 'hello'",
    "attuned.pack_archive": "true",
}

Node = Callable[[str], ClusterRole]


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def node(postgres_url: str, tmp_path: Path) -> Iterator[Node]:
    made: list[ClusterRole] = []

    def make(name: str) -> ClusterRole:
        config = AttunedConfig.model_validate(
            {
                "state_dir": str(tmp_path / name),
                "database": {"url": postgres_url},
                "cluster": {"node": name, "poll_interval": 0.01, "check_timeout": CHECK_TIMEOUT},
            }
        )
        made.append(ClusterRole(config, Registry.from_config(config)))
        return made[-1]

    yield make
    for role in made:
        role.close()
        role.registry.close()
        role.registry.db.dispose()


def leading(role: ClusterRole) -> ClusterRole:
    assert role.lead()[0], f"{role.node} should lead"
    return role


def cut_election(role: ClusterRole, url: str) -> None:
    """What the server does when the leader's host vanishes: end its election session."""
    pid = role.election.backend_pid
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.01)


def rows_of_hello(url: str) -> dict[str, int]:
    counts = {}
    with psycopg.connect(libpq(url)) as conn:
        for table, where in WRITTEN.items():
            row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
            counts[table] = row[0] if row else -1
    return counts


class PausedAfterCheck:
    """The leader's pre-commit hook, then a wait: the leader has checked it leads (on its
    election connection) and its transaction is written, not committed."""

    def __init__(self, role: ClusterRole) -> None:
        self.reached = threading.Event()
        self.resume = threading.Event()
        self._check = role.registry.hooks.before_commit
        role.registry.hooks = dataclasses.replace(role.registry.hooks, before_commit=self)

    def __call__(self, session: Session) -> None:
        self._check(session)
        if not self.reached.is_set():
            self.reached.set()
            assert self.resume.wait(timeout=30)


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # the test reads it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_a_leader_deposed_between_its_check_and_its_commit_writes_nothing(
    node: Node, postgres_url: str, make_pack: PackFactory
) -> None:
    old = leading(node("a"))
    new = node("b")
    pack = make_pack("hello")
    pause = PausedAfterCheck(old)
    thread, errors = in_thread(lambda: old.registry.register(pack))
    assert pause.reached.wait(timeout=30), errors
    cut_election(old, postgres_url)  # the paused leader's session is declared dead
    assert new.lead() == (True, True)  # nothing blocks the takeover: the old one holds no fence
    with capture_logs() as logs:
        pause.resume.set()
        thread.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], FencedOut), errors
    assert "no longer held by this node's session" in str(errors[0])
    assert rows_of_hello(postgres_url) == dict.fromkeys(WRITTEN, 0)  # nothing of the old leader
    assert old.role == "follower" and old.lead() == (False, False)
    lost = [e for e in logs if e["event"] == "cluster.leadership.lost"]
    assert [(e["node"], e["fenced"]) for e in lost] == [("a", True)]
    assert "commit refused" in lost[0]["error"]
    new.registry.register(pack)  # the new leader's commits pass its fence
    registered = dict.fromkeys(WRITTEN, 1) | {"attuned.outbox_event": 2}  # tested, registered
    assert rows_of_hello(postgres_url) == registered


def backend_alive(url: str, pid: int) -> bool:
    with psycopg.connect(libpq(url)) as conn:
        return bool(
            conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        )


BUSY = 0.2  # seconds a transaction past its fence keeps working


def test_a_new_leader_waits_for_a_commit_already_past_its_fence(
    node: Node, postgres_url: str
) -> None:
    old = leading(node("a"))
    new = node("b")
    past_fence, ended = threading.Event(), {}

    def committing() -> None:
        try:
            with old.registry.db.write() as session:
                announce(session, "hello -")
                connection = session.connection()
                ended["pid"] = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                old.election.fence(connection, old.election.term)  # holds the fence
                ended["fenced_at"] = time.monotonic()
                past_fence.set()
                time.sleep(BUSY)  # still busy; the write's own fence will refuse it then
        finally:
            ended["at"] = time.monotonic()

    thread, errors = in_thread(committing)
    assert past_fence.wait(timeout=10)
    cut_election(old, postgres_url)
    assert new.election.try_acquire()
    won = time.monotonic()
    thread.join(timeout=10)
    assert [type(e) for e in errors] == [FencedOut]
    # the new leader could lead only once the transaction had ended, not while it was busy
    # (the thread's own clock reading after its rollback may come a hair after the database's)
    assert won - ended["fenced_at"] >= BUSY
    assert backend_alive(postgres_url, ended["pid"])  # waited for, not ended


def test_a_commit_stuck_past_its_fence_is_ended_by_the_new_leader(
    node: Node, postgres_url: str
) -> None:
    old = leading(node("a"))
    new = node("b")
    with pytest.raises(DBAPIError), old.registry.db.write() as session:
        announce(session, "hello -")
        pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        old.election.fence(session.connection(), old.election.term)  # then frozen, or cut off
        cut_election(old, postgres_url)
        started = time.monotonic()
        assert new.election.try_acquire()  # it waited, then ended the stuck session
        waited = time.monotonic() - started
    assert CHECK_TIMEOUT / 2 <= waited < CHECK_TIMEOUT * 2
    assert not backend_alive(postgres_url, pid)  # its transaction rolled back with it
    assert new.election.term is not None
    print(f"\ntakeover past a stuck commit took {waited:.2f} s")


def test_a_transaction_of_an_older_reign_of_the_same_node_is_refused(node: Node) -> None:
    role = leading(node("a"))
    with (
        pytest.raises(FencedOut, match="began in term 1") as refused,
        role.registry.db.write() as session,
    ):
        announce(session, "hello -")
        role.election.release()  # stood down, and
        assert role.election.try_acquire()  # leads again: what began before is stale
    assert refused.value.deposed is False
    assert role.role == "leader" and role.lead() == (True, False)  # the new reign goes on
    with role.registry.db.write() as session:
        announce(session, "hello -")


def test_a_follower_writes_nothing(node: Node) -> None:
    leading(node("a"))
    follower = node("b")
    assert follower.lead() == (False, False)
    with (
        pytest.raises(NotLeader, match="b is not the leader"),
        follower.registry.db.write() as session,
    ):
        announce(session, "hello -")
