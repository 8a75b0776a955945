"""The resolver's PostgreSQL connections: TCP keepalives bounding a dead peer, and the
pool's check before it hands a connection out."""

from __future__ import annotations

import select
from typing import Any

import psycopg
import psycopg.pq
from psycopg_pool import AsyncConnectionPool


async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check before it hands a connection out, without a round trip when the
    connection is idle and its socket has nothing to read: the server has said nothing since
    its last answer. A restart, `pg_terminate_backend` or an idle timeout sends an error and
    closes the socket, and a dead peer noticed by the keepalives errors it: all readable,
    so those (and anything not idle) get the pool's own check, an empty query, which fails
    and has the connection replaced. Raises when the connection is not usable."""
    pgconn = conn.pgconn
    if (
        pgconn.status == psycopg.pq.ConnStatus.OK
        and pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        and not _readable(pgconn.socket)
    ):
        return
    await AsyncConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    """Whether the socket has something to read (or an error or hang-up) right now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def connection_keepalives(connect_timeout_s: float, idle_s: int = 5) -> dict[str, Any]:
    """libpq options bounding connects and noticing a dead peer at the TCP level."""
    return {
        "connect_timeout": max(1, round(connect_timeout_s)),
        "keepalives": 1,
        "keepalives_idle": max(1, idle_s),
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": max(1, idle_s) * 2000,  # ms of unacknowledged data
    }
