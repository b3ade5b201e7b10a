"""Leader election: a PostgreSQL session advisory lock held on a dedicated connection.

The lock lives exactly as long as the session that took it. When the leader process dies
or its connection is cut, the server ends the session and frees the lock at once, and the
next follower to poll `try_acquire()` leads. A silently dropped network is bounded by TCP
keepalives, set on both ends: the server frees the lock, the old leader sees its check
fail. The old leader only learns it lost the lock when it asks: `ensure_leader()` before
every commit is what keeps it from writing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
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
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False
        self._mutex = threading.RLock()

    @property
    def is_leader(self) -> bool:
        """What the last call found; no I/O."""
        return self._leader

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
        return self._query(conn, _TRY_LOCK_SQL, self.settings.lock_key) == ["t"]

    def _query(self, conn: psycopg.Connection[Any], sql: str, *params: int) -> list[str | None]:
        return fetch_column(conn, sql, params, self.settings.check_timeout)

    def _drop(self) -> None:
        self._leader = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # libpq's PQfinish: sends Terminate if it can, never raises
