"""Flow leases in PostgreSQL: the table ``microlib_leases`` beside the model tables.

Every statement is a single atomic ``INSERT ... ON CONFLICT`` / ``UPDATE`` / ``DELETE``
and expiry is judged by the database's clock (``now()``), so hosts whose clocks
disagree still agree on who owns a flow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .leases import LeaseStore

_CREATE = """
CREATE TABLE IF NOT EXISTS microlib_leases (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)"""
_CLAIM = """
INSERT INTO microlib_leases AS l (key, owner, expires_at)
VALUES (%s, %s, now() + make_interval(secs => %s))
ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE l.owner = excluded.owner OR l.expires_at < now()
RETURNING owner"""
_RENEW = """
UPDATE microlib_leases SET expires_at = now() + make_interval(secs => %s)
WHERE owner = %s AND key = ANY(%s) RETURNING key"""
_RELEASE = "DELETE FROM microlib_leases WHERE key = %s AND owner = %s"
_EXPIRED = "SELECT key FROM microlib_leases WHERE expires_at < now() ORDER BY expires_at LIMIT %s"

Connect = Callable[[], AbstractAsyncContextManager[Any]]


class PostgresLeases(LeaseStore):
    """Leases on the PostgreSQL store's pool.

    Args:
        connection: the store's ``_connection`` (an async context manager giving an
            autocommit connection; it maps an unreachable server to
            ``DatasourceUnavailable``).
    """

    def __init__(self, connection: Connect) -> None:
        self._connection = connection
        self._ready = False

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            if not self._ready:
                # Hosts starting together would race on CREATE TABLE IF NOT EXISTS.
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('microlib_leases'))")
                    await conn.execute(_CREATE)
                self._ready = True
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall()) if cur.description else []

    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        return bool(await self._rows(_CLAIM, (key, owner, ttl)))

    async def renew(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        return {row[0] for row in await self._rows(_RENEW, (ttl, owner, list(keys)))}

    async def release(self, key: str, owner: str) -> None:
        await self._rows(_RELEASE, (key, owner))

    async def expired(self, limit: int = 100) -> list[str]:
        return [row[0] for row in await self._rows(_EXPIRED, (limit,))]

    async def close(self) -> None:
        """Nothing to do: the pool belongs to the store."""
