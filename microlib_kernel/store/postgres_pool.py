"""Taking a working connection out of a psycopg pool, quickly, also after a restart.

A server restart breaks every pooled connection. psycopg_pool's own ``check`` finds a
broken one, but then sleeps its reconnection backoff (a second) before trying the
next, so the first request after a restart would wait a second or time out. Here a
broken connection is closed (the pool replaces it) and the next one is tried at once,
until the deadline. A connection handed out less than ``trusted_for`` seconds ago is
not probed: under load the probe's round trip would cost each request a third of its
database time, and a connection broken in that second fails its one request cleanly
(``DatasourceUnavailable``) and is replaced.
"""

from __future__ import annotations

import time
from typing import Any


class Freshness:
    """When each connection was last used, to decide which ones to probe.

    Args:
        trusted_for: seconds a recently used connection is trusted without a probe.
    """

    def __init__(self, trusted_for: float = 1.0) -> None:
        self.trusted_for = trusted_for
        self._used: dict[int, float] = {}

    def stale(self, conn: Any) -> bool:
        last = self._used.get(id(conn))
        return last is None or time.monotonic() - last >= self.trusted_for

    def mark(self, conn: Any) -> None:
        self._used[id(conn)] = time.monotonic()

    def forget(self, conn: Any) -> None:
        self._used.pop(id(conn), None)


async def checkout(pool: Any, fresh: Freshness, timeout: float) -> Any:
    """A working connection from an ``AsyncConnectionPool`` (``PoolTimeout`` if none in time)."""
    from psycopg_pool import AsyncConnectionPool

    deadline = time.monotonic() + timeout
    while True:
        conn = await pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
        if not fresh.stale(conn):
            fresh.mark(conn)
            return conn
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            fresh.forget(conn)
            await conn.close()
            await pool.putconn(conn)  # closed: the pool opens a new one in its place
            continue
        fresh.mark(conn)
        return conn


def checkout_sync(pool: Any, fresh: Freshness, timeout: float) -> Any:
    """:func:`checkout` for a synchronous ``ConnectionPool``."""
    from psycopg_pool import ConnectionPool

    deadline = time.monotonic() + timeout
    while True:
        conn = pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
        if not fresh.stale(conn):
            fresh.mark(conn)
            return conn
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            fresh.forget(conn)
            conn.close()
            pool.putconn(conn)
            continue
        fresh.mark(conn)
        return conn
