"""Followers serve the leader's packs from the database alone: catch-up, upgrades, removal,
tampering, and NOTIFY wake-ups (PostgreSQL)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import delete, select, update

from attuned.cluster.archives import announce
from attuned.cluster.follower import Follower
from attuned.registry import Registry
from attuned.store.database import Database
from attuned.store.models import PackArchive
from attuned.store.packstore import PackStore, version_dirname
from tests.cluster.archive_helpers import publish, tree
from tests.conftest import EXAMPLES, POSTGRES_ENV, PackFactory, write

needs_postgres = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV), reason=f"LISTEN/NOTIFY needs {POSTGRES_ENV}"
)

ARCHIVES = PackArchive.__table__  # type: ignore[attr-defined]


@pytest.fixture
def leader(database: Database, tmp_path: Path) -> Registry:
    return Registry(database, PackStore(tmp_path / "leader" / "packs"))


@pytest.fixture
def follower(database: Database, tmp_path: Path) -> Iterator[Follower]:
    one = Follower(
        database, PackStore(tmp_path / "follower" / "packs"), work_dir=tmp_path / "follower/work"
    )
    yield one
    one.close()


def assert_same_trees(leader: Registry, follower: Follower, refs: list[str]) -> None:
    """Byte-identical `packs_dir/<ref>`: same entries, same bytes, same permission bits."""
    served = sorted(e.name for e in follower.store.root.iterdir() if not e.name.startswith("."))
    assert served == sorted(refs)
    for ref in refs:
        theirs = tree((leader.store.root / ref).resolve())
        mine = tree((follower.store.root / ref).resolve())
        assert any(mode == 0o755 for kind, mode, _ in theirs.values() if kind == "file")
        assert mine == theirs, ref
        assert (follower.store.root / ref).resolve().name == (
            leader.store.root / ref
        ).resolve().name


def tools_pack(make_pack: PackFactory, version: str, note: str) -> Path:
    root = make_pack("tools", version=version, files={"docs/note.txt": f"{note}\n"})
    write(root / "scripts/run.sh", f"#!/bin/sh\necho {note}\n", executable=True)
    (root / "lib").mkdir(exist_ok=True)
    (root / "lib/data.bin").write_bytes(note.encode() * 500)
    return root


def test_an_empty_follower_catches_up_to_three_packs(
    leader: Registry, follower: Follower, make_pack: PackFactory
) -> None:
    publish(leader, EXAMPLES / "hello")
    publish(leader, EXAMPLES / "welcome")
    publish(leader, tools_pack(make_pack, "1.0.0", "first"))

    result = follower.sync_once()
    assert (result.activated, result.removed, result.missing, result.errors) == (
        ["hello", "tools", "welcome"],
        [],
        [],
        [],
    )
    assert_same_trees(leader, follower, ["hello", "tools", "welcome"])

    again = follower.sync_once()  # idempotent
    assert (again.activated, again.removed, again.complete) == ([], [], True)
    assert list(follower.work_dir.iterdir()) == []


def test_a_follower_offline_during_three_upgrades_catches_up_in_one_sync(
    database: Database, leader: Registry, make_pack: PackFactory, tmp_path: Path
) -> None:
    packs = PackStore(tmp_path / "follower" / "packs")
    work = tmp_path / "follower" / "work"
    publish(leader, EXAMPLES / "hello")
    publish(leader, tools_pack(make_pack, "1.0.0", "one"))
    first = Follower(database, packs, work_dir=work)
    assert first.sync_once().activated == ["hello", "tools"]
    first.close()  # offline from here

    for version in ("1.1.0", "1.2.0", "2.0.0"):
        record = publish(leader, tools_pack(make_pack, version, f"v{version}"))
        assert record.version == version

    restarted = Follower(database, packs, work_dir=work)
    try:
        result = restarted.sync_once()
        assert (result.activated, result.complete) == (["tools"], True)
        assert_same_trees(leader, restarted, ["hello", "tools"])
        served = packs.active_dir("tools")
        assert served is not None
        assert served.name == version_dirname("tools", "2.0.0", record.digest)
        assert (served / "scripts/run.sh").read_text() == "#!/bin/sh\necho v2.0.0\n"
        # only what was served is on disk: the intermediate versions were never fetched
        kept = sorted(p.name.split("-")[1] for p in packs.versions.glob("tools-*"))
        assert kept == ["1.0.0", "2.0.0"]
        assert restarted.sync_once().activated == []
    finally:
        restarted.close()


def test_unregistered_packs_are_removed(
    leader: Registry, follower: Follower, make_pack: PackFactory
) -> None:
    publish(leader, EXAMPLES / "hello")
    publish(leader, tools_pack(make_pack, "1.0.0", "one"))
    assert follower.sync_once().activated == ["hello", "tools"]
    served = follower.store.active_dir("tools")
    assert served is not None

    leader.unregister("tools")
    result = follower.sync_once()
    assert (result.activated, result.removed, result.complete) == ([], ["tools"], True)
    assert not follower.store.link("tools").exists()
    assert not served.exists()
    assert_same_trees(leader, follower, ["hello"])


def test_a_rollback_to_a_kept_version_needs_no_download(
    database: Database, leader: Registry, follower: Follower, make_pack: PackFactory
) -> None:
    first = publish(leader, tools_pack(make_pack, "1.0.0", "one"))
    assert follower.sync_once().activated == ["tools"]
    publish(leader, tools_pack(make_pack, "1.1.0", "two"))
    assert follower.sync_once().activated == ["tools"]

    leader.register(tools_pack(make_pack, "1.0.0", "one"), skip_tests=True, replace=True)
    with database.write() as session:  # no archive to fetch: only the kept copy can serve
        session.execute(delete(ARCHIVES))
    result = follower.sync_once()
    assert (result.activated, result.complete) == (["tools"], True)
    served = follower.store.active_dir("tools")
    assert served is not None
    assert served.name == version_dirname("tools", "1.0.0", first.digest)
    assert_same_trees(leader, follower, ["tools"])


def test_a_missing_archive_is_reported_and_retried(
    database: Database, leader: Registry, follower: Follower, make_pack: PackFactory
) -> None:
    registered = leader.register(tools_pack(make_pack, "1.0.0", "one"), skip_tests=True).pack
    with database.write() as session:  # whether or not the registry stored one: gone now
        session.execute(delete(ARCHIVES))

    result = follower.sync_once()
    assert (result.activated, result.missing, result.errors) == ([], ["tools"], [])
    assert follower.store.active_dir("tools") is None

    publish(leader, tools_pack(make_pack, "1.0.0", "one"))  # same content: a reinstall
    result = follower.sync_once()
    assert (result.activated, result.missing) == (["tools"], [])
    served = follower.store.active_dir("tools")
    assert served is not None
    assert served.name == version_dirname("tools", "1.0.0", registered.digest)


def test_a_tampered_archive_is_an_error_and_the_old_version_stays_served(
    database: Database, leader: Registry, follower: Follower, make_pack: PackFactory
) -> None:
    publish(leader, tools_pack(make_pack, "1.0.0", "one"))
    assert follower.sync_once().activated == ["tools"]
    before = follower.store.active_dir("tools")
    new = publish(leader, tools_pack(make_pack, "1.1.0", "two"))
    with database.write() as session:  # a real UPDATE of the stored bytes
        data = session.execute(
            select(ARCHIVES.c.data).where(ARCHIVES.c.digest == new.digest)
        ).scalar_one()
        flipped = bytes(data[:-40]) + bytes([data[-40] ^ 0xFF]) + bytes(data[-39:])
        session.execute(
            update(ARCHIVES).where(ARCHIVES.c.digest == new.digest).values(data=flipped)
        )

    result = follower.sync_once()
    assert result.activated == []
    assert len(result.errors) == 1 and result.errors[0].startswith("tools: archive ")
    assert follower.store.active_dir("tools") == before
    assert list(follower.work_dir.iterdir()) == []
    assert sorted(p.name for p in follower.store.versions.iterdir()) == [before.name]


# -- NOTIFY (PostgreSQL) -------------------------------------------------------------------


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def pg_follower(pg: Database, tmp_path: Path) -> Iterator[Follower]:
    one = Follower(pg, PackStore(tmp_path / "f" / "packs"), work_dir=tmp_path / "f" / "work")
    yield one
    one.close()


@needs_postgres
def test_notify_wakes_the_follower_at_commit_not_before(
    pg: Database, pg_follower: Follower
) -> None:
    assert pg_follower.sync_once().complete  # starts listening before it reads
    times: dict[str, float] = {}

    def leader_commits() -> None:
        time.sleep(0.2)
        with pg.write() as session:
            announce(session, "hello 1.0.0")
            times["announced"] = time.monotonic()
            time.sleep(0.6)  # NOTIFY sent, transaction still open
            times["committing"] = time.monotonic()
        times["committed"] = time.monotonic()

    thread = threading.Thread(target=leader_commits)
    thread.start()
    assert pg_follower.wait_for_change(timeout=5.0) is True
    woke = time.monotonic()
    thread.join()
    assert woke >= times["committing"] > times["announced"] + 0.5  # not before the commit
    assert woke - times["committed"] < 0.25  # a fraction of a second after it


@needs_postgres
def test_wait_times_out_and_drains_a_burst(pg: Database, pg_follower: Follower) -> None:
    pg_follower.sync_once()
    started = time.monotonic()
    assert pg_follower.wait_for_change(timeout=0.3) is False
    assert 0.25 < time.monotonic() - started < 1.0

    for n in range(5):
        with pg.write() as session:
            announce(session, f"change {n}")
    assert pg_follower.wait_for_change(timeout=2.0) is True
    assert pg_follower.wait_for_change(timeout=0.2) is False  # all five answered by one wake


@needs_postgres
def test_a_killed_listening_connection_is_replaced(pg: Database, pg_follower: Follower) -> None:
    pg_follower.sync_once()
    with psycopg.connect(pg.url.replace("+psycopg", ""), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'attuned-follower' AND datname = current_database()"
        ).fetchall()
    assert killed == [(True,)]
    started = time.monotonic()
    # notifications sent while it was gone are lost: it says "sync now" at once
    assert pg_follower.wait_for_change(timeout=5.0) is True
    assert time.monotonic() - started < 1.0
    assert pg_follower.wait_for_change(timeout=0.2) is False

    with pg.write() as session:
        announce(session, "after reconnect")
    assert pg_follower.wait_for_change(timeout=2.0) is True


@needs_postgres
def test_a_running_follower_serves_a_new_pack_within_a_second(
    pg: Database, pg_follower: Follower, make_pack: PackFactory, tmp_path: Path
) -> None:
    leader = Registry(pg, PackStore(tmp_path / "leader" / "packs"))
    stop = threading.Event()
    synced = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            if pg_follower.sync_once().activated:
                synced.set()
            pg_follower.wait_for_change(timeout=10.0)  # only NOTIFY can wake it in time

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        time.sleep(0.3)  # the follower is waiting, listening
        published = time.monotonic()
        publish(leader, tools_pack(make_pack, "1.0.0", "live"))
        assert synced.wait(timeout=3.0)
        assert time.monotonic() - published < 1.0
        assert_same_trees(leader, pg_follower, ["tools"])
    finally:
        stop.set()
        with pg.write() as session:
            announce(session, "stop")
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_on_sqlite_waiting_is_a_plain_sleep(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    follower = Follower(db, PackStore(tmp_path / "packs"), work_dir=tmp_path / "work")
    with db.write() as session:
        announce(session, "nobody listens")  # a no-op, not an error
    started = time.monotonic()
    assert follower.wait_for_change(timeout=0.2) is False
    assert time.monotonic() - started >= 0.2
    follower.close()
    db.dispose()
