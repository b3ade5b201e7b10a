"""One query with a client-side deadline, for the leader's liveness check.

statement_timeout is enforced by the server, keepalives by the kernel after many seconds;
neither helps when the server accepts the bytes but does not answer (a stalled backend, a
paused host). Here the client stops waiting after `timeout` seconds, whatever the cause.
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq

_INT8 = 20  # the bigint type's oid


class QueryTimeout(psycopg.OperationalError):
    """The server did not answer within the deadline; the connection is unusable."""


def _wait(pgconn: pq.abc.PGconn, deadline: float, *, write: bool) -> None:
    remaining = deadline - time.monotonic()
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLOUT if write else select.POLLIN)
    if remaining <= 0 or not poller.poll(remaining * 1000):
        raise QueryTimeout("no answer from PostgreSQL in time")


def fetch_column(
    conn: psycopg.Connection[Any], sql: str, params: Sequence[int], timeout: float
) -> list[str | None]:
    """The first column of every row of `sql` ($1..$n: bigint `params`), as text.

    Raises psycopg.OperationalError (QueryTimeout after `timeout` seconds) when the
    connection fails; the caller closes it. The connection must be idle, in autocommit.
    """
    pgconn = conn.pgconn
    deadline = time.monotonic() + timeout
    pgconn.send_query_params(
        sql.encode(), [str(p).encode() for p in params], param_types=[_INT8] * len(params)
    )
    while pgconn.flush():
        _wait(pgconn, deadline, write=True)
    rows: list[str | None] = []
    error: str | None = None
    while True:  # read every result, so the connection is idle again afterwards
        while pgconn.is_busy():
            _wait(pgconn, deadline, write=False)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if result.status == pq.ExecStatus.TUPLES_OK:
            for row in range(result.ntuples):
                value = result.get_value(row, 0)
                rows.append(None if value is None else value.decode())
        else:
            error = (result.error_message or b"query failed").decode(errors="replace")
    if error is not None or pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError((error or "connection lost").strip())
    return rows
