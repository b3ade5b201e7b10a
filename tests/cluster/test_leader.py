"""Leader election on a real PostgreSQL: one leader, prompt failover, no writes after a loss.

Advisory locks are per database, so each test draws its own random lock key and the tests
share the server from ATTUNED_TEST_POSTGRES_URL. Tests where the server itself must die or
stall use a throwaway cluster. Takeover times are printed (`pytest -s`) for docs/multi-host.md.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from attuned.cluster.leader import (
    DEFAULT_LOCK_KEY,
    ElectionSettings,
    LeaderElection,
    NotLeader,
    libpq_conninfo,
)
from tests.conftest import POSTGRES_ENV, REPO
from tests.pgcluster import ThrowawayCluster

POLL = 0.01  # the followers' poll here: fine enough to measure detection, not polling

Elect = Callable[..., LeaderElection]

needs_server = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"leader election tests need {POSTGRES_ENV} "
        "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)",
    ),
]


def settings(*, check_timeout: float = 1.0) -> ElectionSettings:
    """A lock key of this test's own, so tests sharing the database never see each other."""
    return ElectionSettings(
        lock_key=random.randrange(1, 2**63), poll_interval=POLL, check_timeout=check_timeout
    )


@pytest.fixture
def elect() -> Iterator[Elect]:
    made: list[LeaderElection] = []

    def make(url: str, node: str, config: ElectionSettings) -> LeaderElection:
        made.append(LeaderElection(url, node, config))
        return made[-1]

    yield make
    for election in made:
        election.close()


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def takeover(followers: Sequence[LeaderElection], since: float) -> tuple[LeaderElection, float]:
    """Poll like followers do until one leads; that one and the seconds since `since`."""
    deadline = since + 10
    while time.monotonic() < deadline:
        won = [f for f in followers if f.try_acquire()]
        if won:
            assert len(won) == 1, f"two leaders at once: {[f.node for f in won]}"
            return won[0], time.monotonic() - since
        time.sleep(followers[0].settings.poll_interval)
    raise AssertionError("no follower took over within 10 s")


def report(what: str, seconds: float) -> None:
    print(f"\ntakeover {what}: {seconds * 1000:.1f} ms (followers polling every {POLL} s)")


# -- without a server -----------------------------------------------------------------------


def test_the_default_lock_key_is_a_fixed_positive_digest_of_the_name() -> None:
    digest = hashlib.sha256(b"attuned").digest()
    assert int.from_bytes(digest[:8], "big") >> 1 == DEFAULT_LOCK_KEY
    assert 0 < DEFAULT_LOCK_KEY < 2**63 == 1 << 63
    assert ElectionSettings().lock_key == DEFAULT_LOCK_KEY
    with pytest.raises(ValueError, match="bigint"):
        ElectionSettings(lock_key=2**63)


def test_the_pg_locks_query_in_the_docs_names_the_default_key() -> None:
    text = (REPO / "docs" / "multi-host.md").read_text()
    assert f"l.classid = {DEFAULT_LOCK_KEY >> 32} " in text
    assert f"l.objid = {DEFAULT_LOCK_KEY & 0xFFFFFFFF} " in text
    assert f"`{DEFAULT_LOCK_KEY}`" in text


def test_the_url_becomes_a_libpq_conninfo_with_keepalives_on_both_ends() -> None:
    url = "postgresql+psycopg://bob:p%40ss%20word@db.example:6543/attuned?sslmode=require&options=-c%20work_mem%3D8MB"
    config = ElectionSettings(keepalives_idle=7, keepalives_interval=3, keepalives_count=4)
    params = conninfo_to_dict(libpq_conninfo(url, "host-a", config))
    assert params["host"] == "db.example"
    assert params["port"] == "6543"
    assert params["user"] == "bob"
    assert params["password"] == "p@ss word"
    assert params["dbname"] == "attuned"
    assert params["sslmode"] == "require"
    assert params["application_name"] == "attuned:host-a"
    assert (params["keepalives"], params["keepalives_idle"]) == ("1", "7")
    assert (params["keepalives_interval"], params["keepalives_count"]) == ("3", "4")
    options = str(params["options"]).split(" -c ")
    assert options[0] == "-c work_mem=8MB"  # the operator's own options survive
    assert {"tcp_keepalives_idle=7", "tcp_keepalives_count=4", "idle_session_timeout=0"} <= set(
        options
    )


# -- on the shared server -------------------------------------------------------------------


@pytest.fixture
def url() -> str:
    return os.environ[POSTGRES_ENV]


class TestOnTheSharedServer:
    pytestmark = needs_server

    def test_exactly_one_of_three_leads_and_everyone_names_it(self, url: str, elect: Elect) -> None:
        config = settings()
        nodes = [elect(url, f"node-{i}", config) for i in range(3)]
        assert all(n.leader() is None for n in nodes)
        won = [n.try_acquire() for n in nodes]
        assert won.count(True) == 1
        leader = nodes[won.index(True)]
        assert [n.is_leader for n in nodes] == won
        assert {n.leader() for n in nodes} == {leader.node}
        leader.ensure_leader()
        for follower in (n for n in nodes if n is not leader):
            with pytest.raises(NotLeader, match="is not the leader"):
                follower.ensure_leader()
            assert not follower.try_acquire()

    def test_the_leader_polling_again_does_not_stack_the_lock(self, url: str, elect: Elect) -> None:
        config = settings()
        leader, other = elect(url, "a", config), elect(url, "b", config)
        assert leader.try_acquire() and leader.try_acquire() and leader.try_acquire()
        leader.release()  # one unlock must free it: a stacked session lock would not be
        assert not leader.is_leader
        assert other.try_acquire()
        assert leader.leader() == "b"
        with pytest.raises(NotLeader):
            leader.ensure_leader()

    def test_closing_the_leader_hands_over_within_a_poll(self, url: str, elect: Elect) -> None:
        config = settings()
        leader = elect(url, "old", config)
        followers = [elect(url, f"f{i}", config) for i in range(2)]
        assert leader.try_acquire()
        assert not any(f.try_acquire() for f in followers)
        since = time.monotonic()
        leader.close()
        new, seconds = takeover(followers, since)
        report("after close()", seconds)
        assert seconds < POLL + 0.5
        assert followers[0].leader() == new.node
        with pytest.raises(NotLeader):
            leader.ensure_leader()

    def test_a_terminated_leader_connection_fails_the_check_and_a_follower_takes_over(
        self, url: str, elect: Elect
    ) -> None:
        config = settings()
        leader = elect(url, "old", config)
        followers = [elect(url, f"f{i}", config) for i in range(2)]
        assert leader.try_acquire()
        with psycopg.connect(libpq(url), autocommit=True) as admin:
            since = time.monotonic()
            admin.execute("SELECT pg_terminate_backend(%s)", [leader.backend_pid])
        new, seconds = takeover(followers, since)
        report("after pg_terminate_backend", seconds)
        assert seconds < POLL + 0.5
        assert leader.is_leader  # it cannot know until it asks ...
        with pytest.raises(NotLeader, match="lost the election connection"):
            leader.ensure_leader()  # ... and it asks before every commit
        assert not leader.is_leader
        assert not leader.try_acquire()  # reconnects, but the new leader holds the lock
        assert leader.leader() == new.node

    def test_a_lock_gone_from_a_live_session_is_noticed(self, url: str, elect: Elect) -> None:
        config = settings()
        leader = elect(url, "a", config)
        assert leader.try_acquire()
        assert leader._conn is not None
        leader._conn.execute("SELECT pg_advisory_unlock_all()")  # as a pooler reusing it would
        with pytest.raises(NotLeader, match="no longer held"):
            leader.ensure_leader()
        assert not leader.is_leader

    def test_a_killed_leader_process_hands_over_at_once(self, url: str, elect: Elect) -> None:
        config = settings()
        script = textwrap.dedent(
            """
            import sys, time
            from attuned.cluster.leader import ElectionSettings, LeaderElection
            election = LeaderElection(sys.argv[1], "doomed", ElectionSettings(lock_key=int(sys.argv[2])))
            while not election.try_acquire():
                time.sleep(0.05)
            print(election.backend_pid, flush=True)
            time.sleep(60)
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script, url, str(config.lock_key)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip().isdigit(), "the child never led"
            followers = [elect(url, f"f{i}", config) for i in range(2)]
            assert followers[0].leader() == "doomed"
            assert not any(f.try_acquire() for f in followers)
            since = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            new, seconds = takeover(followers, since)
        finally:
            proc.kill()
            proc.wait()
        report("after kill -9 of the leader process", seconds)
        assert seconds < POLL + 0.5
        assert followers[1].leader() == new.node


# -- on a throwaway cluster: the server dies or stalls --------------------------------------


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_when_the_server_goes_away_the_leader_steps_down_without_hanging(
    pg_cluster: ThrowawayCluster, elect: Elect, how: str
) -> None:
    config = settings(check_timeout=1.0)
    a, b = elect(pg_cluster.url, "a", config), elect(pg_cluster.url, "b", config)
    assert a.try_acquire() and not b.try_acquire()
    getattr(pg_cluster, how)()  # kill: SIGKILL the postmaster; stop: fast shutdown
    started = time.monotonic()
    with pytest.raises(NotLeader, match="lost the election connection"):
        a.ensure_leader()
    noticed = time.monotonic() - started
    assert noticed < config.check_timeout
    started = time.monotonic()
    assert not a.try_acquire()
    assert not b.try_acquire()
    assert a.leader() is None
    assert time.monotonic() - started < 1.0  # connection refused, not a timeout
    print(f"\nserver {how}: the leader noticed in {noticed * 1000:.1f} ms")
    pg_cluster.start()
    new, _ = takeover([a, b], time.monotonic())
    assert {a.leader(), b.leader()} == {new.node}


def test_a_stalled_server_process_costs_the_leader_its_lead_after_check_timeout(
    pg_cluster: ThrowawayCluster, elect: Elect
) -> None:
    config = settings(check_timeout=0.5)
    a, b = elect(pg_cluster.url, "a", config), elect(pg_cluster.url, "b", config)
    assert a.try_acquire()
    backend = a.backend_pid
    assert backend is not None
    os.kill(backend, signal.SIGSTOP)  # accepts bytes (the kernel does), never answers
    try:
        started = time.monotonic()
        with pytest.raises(NotLeader, match="did not answer within 0.5 s"):
            a.ensure_leader()
        waited = time.monotonic() - started
        assert 0.45 < waited < 1.5
        assert not b.try_acquire()  # the stalled session still holds the lock: no second leader
    finally:
        os.kill(backend, signal.SIGCONT)
    new, seconds = takeover([b], time.monotonic())  # it wakes up, finds a closed socket, exits
    assert new is b
    assert seconds < 2
