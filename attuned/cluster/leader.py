"""Leader election: a PostgreSQL session advisory lock held on a dedicated connection.

The lock lives exactly as long as the session that took it. When the leader process dies
or its connection is cut, the server ends the session and frees the lock at once, and the
next follower to poll `try_acquire()` leads. A silently dropped network is bounded by TCP
keepalives, set on both ends: the server frees the lock, the old leader sees its check
fail. The old leader only learns it lost the lock when it asks: `ensure_leader()` on its
own connection, then `fence()` inside each write transaction right before COMMIT.

A check on another connection leaves a window: a leader paused after it and deposed meanwhile
would still commit. So each leader transaction also takes a *shared* transaction lock on the
fence key and checks, in that transaction, that its election session still holds the leader
lock; a new leader, once it holds the leader lock, takes the fence key *exclusively* for an
instant. That barrier waits for every old commit already past its check (ending the sessions
of those stuck there), and every later one finds the leader lock gone and rolls back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from attuned.cluster.bounded import QueryTimeout, fetch_column
from attuned.errors import AttunedError, headline

APP_PREFIX = "attuned:"

# int.from_bytes(sha256(b"attuned").digest()[:8], "big") >> 1: fixed, positive, and what an
# operator sees in pg_locks (classid = key >> 32, objid = key & 0xFFFFFFFF, objsubid = 1)
DEFAULT_LOCK_KEY = 448831724666708026

# the lock's row in pg_locks for this database; $1, $2: the key's high and low halves
_HOLDER_SQL = """
SELECT coalesce(a.application_name, '') || ' ' || l.pid
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid::bigint = $1 AND l.objid::bigint = $2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# the same, restricted to our own session (and without pg_stat_activity: it runs per commit)
_OURS_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.pid = pg_backend_pid()
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
"""
_TRY_LOCK_SQL = "SELECT pg_try_advisory_lock($1)"
_UNLOCK_SQL = "SELECT pg_advisory_unlock($1)"
# the fence key: the leader key's halves as two int4 (pg_locks: same classid and objid,
# objsubid = 2). A new leader's barrier, in autocommit: held exclusively for one statement
_BARRIER_SQL = "SELECT pg_advisory_xact_lock($1::int4, $2::int4)"
# the sessions of deposed leaders' transactions stuck past their fence; ending one rolls it back
_END_FENCED_SQL = """
SELECT pg_terminate_backend(l.pid) FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# inside a leader's write transaction: the fence key shared (until the transaction ends),
# *then* is the leader lock still granted to the election session? One round trip: the
# correlated subquery runs for the row the fence subquery made, so after the lock is taken
_FENCE_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.classid::bigint = :classid AND l.objid::bigint = :objid AND l.pid = :pid
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND fence.taken IS NOT NULL
)
FROM (SELECT pg_advisory_xact_lock_shared(:hi, :lo)::text AS taken OFFSET 0) AS fence
"""


@dataclass(frozen=True)
class ElectionSettings:
    """Timing of the election; failover takes about the detection time plus one poll."""

    lock_key: int = DEFAULT_LOCK_KEY
    poll_interval: float = 1.0  # how often a follower calls try_acquire()
    keepalives_idle: int = 5  # seconds of silence before the first TCP probe (both ends)
    keepalives_interval: int = 2
    keepalives_count: int = 3  # unanswered probes before a connection is declared dead
    connect_timeout: int = 5
    check_timeout: float = 2.0  # longest a liveness check or lock query may wait

    def __post_init__(self) -> None:
        if not -(2**63) <= self.lock_key < 2**63:  # else every query fails, silently here
            raise ValueError(f"lock_key {self.lock_key} does not fit PostgreSQL's bigint")


class NotLeader(AttunedError):
    """This node must not write: it never led, released the lock, or lost it."""


class FencedOut(NotLeader):
    """A write transaction was refused right before COMMIT. `deposed`: another node may lead
    now (this node's session no longer holds the lock); else only a newer term of this node
    leads, and the transaction belonged to an older one."""

    def __init__(self, message: str, *, deposed: bool) -> None:
        super().__init__(message)
        self.deposed = deposed


@dataclass(frozen=True)
class Term:
    """One reign of this node: the `number`-th attempt to lead, won on backend `pid`."""

    number: int
    pid: int


def _int4(half: int) -> int:
    """An unsigned 32-bit key half as the signed int4 PostgreSQL's two-key functions take."""
    return half - 2**32 if half >= 2**31 else half


def libpq_conninfo(url: str, node: str, settings: ElectionSettings) -> str:
    """attuned's SQLAlchemy URL as a libpq conninfo for the election's own connection."""
    parsed = make_url(url)
    params: dict[str, Any] = {
        key: ",".join(value) if isinstance(value, tuple) else value  # ?host=a&host=b
        for key, value in parsed.query.items()
    }
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("user", parsed.username),
        ("password", parsed.password),
        ("dbname", parsed.database),
    ):
        if value is not None:
            params[key] = value
    # server-side keepalives free the lock when the leader's host vanishes; the session must
    # never be ended for idling, and no statement may outlast the check
    server = (
        f"-c tcp_keepalives_idle={settings.keepalives_idle}"
        f" -c tcp_keepalives_interval={settings.keepalives_interval}"
        f" -c tcp_keepalives_count={settings.keepalives_count}"
        " -c idle_session_timeout=0 -c idle_in_transaction_session_timeout=0"
        f" -c statement_timeout={max(1, int(settings.check_timeout * 1000))}"
        f" -c lock_timeout={max(1, int(settings.check_timeout * 500))}"  # the barrier's wait
    )
    params["options"] = f"{params.get('options') or ''} {server}".strip()
    return make_conninfo(
        "",
        **params,
        application_name=f"{APP_PREFIX}{node}",
        connect_timeout=settings.connect_timeout,
        keepalives=1,
        keepalives_idle=settings.keepalives_idle,
        keepalives_interval=settings.keepalives_interval,
        keepalives_count=settings.keepalives_count,
    )


class LeaderElection:
    """One node's candidacy. Thread-safe: the daemon's loop and its commits may share it."""

    def __init__(
        self, url: str, node: str, settings: ElectionSettings = ElectionSettings()
    ) -> None:
        self.node = node
        self.settings = settings
        self._conninfo = libpq_conninfo(url, node, settings)
        key = settings.lock_key
        self._key_halves = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
        self._fence_key = tuple(_int4(half) for half in self._key_halves)
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False
        self._attempts = 0  # numbers the terms: counted before each attempt to lead
        self._term: Term | None = None
        self._mutex = threading.RLock()

    @property
    def is_leader(self) -> bool:
        """What the last call found; no I/O."""
        return self._leader

    @property
    def term(self) -> Term | None:
        """The reign going on now, if this node leads (as far as the last call found)."""
        return self._term if self._leader else None

    @property
    def backend_pid(self) -> int | None:
        """The server process of the election connection (what pg_locks shows), if open."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None and not conn.closed else None

    def try_acquire(self) -> bool:
        """Lead if nobody else does; True while we hold the lock. Never raises on I/O."""
        with self._mutex:
            attempts = 2 if self._conn is not None else 1  # a stale session: one fresh retry
            for _ in range(attempts):
                try:
                    self._leader = self._acquire(self._connection())
                    return self._leader
                except psycopg.Error:
                    self._drop()
            return False

    def ensure_leader(self) -> None:
        """Raise NotLeader unless the connection answers and the lock is still ours."""
        with self._mutex:
            if not self._leader or self._conn is None or self._conn.closed:
                self._leader = False
                raise NotLeader(f"{self.node} is not the leader")
            try:
                held = self._query(self._conn, _OURS_SQL, *self._key_halves) == ["t"]
            except QueryTimeout as exc:
                self._drop()
                raise NotLeader(
                    f"PostgreSQL did not answer within {self.settings.check_timeout} s: "
                    "leadership given up"
                ) from exc
            except psycopg.Error as exc:
                self._drop()
                raise NotLeader(f"lost the election connection: {headline(exc)}") from exc
            if not held:
                self._leader = False
                raise NotLeader("the leader lock is no longer held by this node's session")

    def fence(self, connection: Connection, term: Term | None) -> None:
        """Inside a write transaction, right before COMMIT: raise FencedOut unless `term` (the
        reign the transaction began in) still leads. The shared fence lock taken here lasts
        until the transaction ends, so no new leader's barrier can pass before it commits."""
        if term is None:
            raise FencedOut(f"{self.node} is not the leader: nothing may be written", deposed=True)
        (hi, lo), (classid, objid) = self._fence_key, self._key_halves
        held = connection.execute(
            text(_FENCE_SQL),
            {"hi": hi, "lo": lo, "classid": classid, "objid": objid, "pid": term.pid},
        ).scalar()
        if not held:
            raise FencedOut(
                f"commit refused: the leader lock is no longer held by this node's session "
                f"(backend {term.pid}, term {term.number}); another node may lead",
                deposed=True,
            )
        if self._attempts != term.number:  # read after the fence: a re-election counts first
            raise FencedOut(
                f"commit refused: the transaction began in term {term.number}, this node "
                f"has stood again since (term {self._attempts})",
                deposed=False,
            )

    def leader(self) -> str | None:
        """The node holding the lock now (its application_name without "attuned:")."""
        with self._mutex:
            try:
                rows = self._query(self._connection(), _HOLDER_SQL, *self._key_halves)
            except psycopg.Error:
                self._drop()
                return None
        if not rows or rows[0] is None:
            return None
        name, _, pid = rows[0].rpartition(" ")
        return name.removeprefix(APP_PREFIX) or f"pid {pid}"

    def release(self) -> None:
        """Step down but keep the connection (to stand again later)."""
        with self._mutex:
            if self._leader and self._conn is not None:
                try:
                    self._query(self._conn, _UNLOCK_SQL, self.settings.lock_key)
                except psycopg.Error:
                    self._drop()  # the session's end frees the lock as well
            self._leader = False

    def close(self) -> None:
        """Step down and close the connection; the server frees the lock with the session."""
        with self._mutex:
            self._drop()

    # -- connection -------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._leader = False  # a new session holds no lock
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def _acquire(self, conn: psycopg.Connection[Any]) -> bool:
        if self._leader:  # session locks stack: do not take it twice, check it
            return self._query(conn, _OURS_SQL, *self._key_halves) == ["t"]
        self._attempts += 1  # before the lock: a transaction of an older term sees it changed
        if self._query(conn, _TRY_LOCK_SQL, self.settings.lock_key) != ["t"]:
            return False
        self._barrier(conn)
        self._term = Term(self._attempts, conn.info.backend_pid)
        return True

    def _barrier(self, conn: psycopg.Connection[Any]) -> None:
        """Let the old leader's commits already past their fence end (for half of
        `check_timeout`), then end the sessions of those still there: a deposed leader frozen
        or cut off inside its commit must not hold off the takeover for as long as its
        session lives. Raises (the caller drops the connection and the lock) if that fails."""
        try:
            self._query(conn, _BARRIER_SQL, *self._fence_key)
            return
        except QueryTimeout:
            raise
        except psycopg.OperationalError:  # lock_timeout: a commit is stuck past its fence
            if conn.pgconn.status != pq.ConnStatus.OK:
                raise
        self._query(conn, _END_FENCED_SQL, *self._key_halves)
        self._query(conn, _BARRIER_SQL, *self._fence_key)

    def _query(self, conn: psycopg.Connection[Any], sql: str, *params: int) -> list[str | None]:
        return fetch_column(conn, sql, params, self.settings.check_timeout)

    def _drop(self) -> None:
        self._leader = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # libpq's PQfinish: sends Terminate if it can, never raises
