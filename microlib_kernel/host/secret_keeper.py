"""The host's side of secrets: publish checks, a codec per table, key rotation.

``host.secrets`` is a :class:`SecretKeeper`. Publishing a model with ``Secret`` fields
needs a usable key; a version that would make stored values unreadable (a field turned
into a secret over plaintext rows, or a secret field turned plain over ciphertext) is
refused unless the model defines ``migrate(record)``. :meth:`SecretKeeper.rotate`
re-encrypts every stored secret with the newest key while the host keeps serving;
:func:`rotate_datasource` does the same offline on a DuckDB file (``microlib secrets
rotate``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DeployRefused, MicrolibError, NotFound
from ..store.prefixed import count_prefix_mismatches
from .secrets import (
    KEY_HINT,
    PREFIX,
    RotationReport,
    SecretCipher,
    SecretCodec,
    is_sealed,
    refuse_without_key,
    rotate_record,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.base import DataSource
    from .context import HostContext
    from .registry import ModelVersion

_CHUNK = 500


class SecretKeeper:
    """Keys and codecs of one host (``host.secrets``)."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self._cipher: SecretCipher | None = None

    @property
    def configured(self) -> bool:
        """Whether a key is set (``MICROLIB_SECRET_KEY``)."""
        return bool(self.ctx.settings.secret_key)

    def cipher(self) -> SecretCipher:
        """The cipher of the configured keys.

        Raises:
            MicrolibError: no key, or a malformed one.
        """
        if self._cipher is None:
            key = self.ctx.settings.secret_key
            if not key:
                raise MicrolibError(f"no MICROLIB_SECRET_KEY is set; {KEY_HINT}")
            self._cipher = SecretCipher(key)
        return self._cipher

    def codec(self, table: str) -> SecretCodec:
        """The record codec of ``table`` (seals the secret fields of whatever version writes)."""
        return SecretCodec(self.cipher, table)

    # -- publish -------------------------------------------------------------------------

    def check(self, planned: list[ModelVersion]) -> None:
        """Refuse models with secrets when no usable key is set.

        Raises:
            DeployRefused: with the hint ``microlib secret-key``.
        """
        for mv in planned:
            names = mv.spec.secret_fields
            if not names:
                continue
            if not self.configured:
                raise refuse_without_key(mv.name, names, None)
            try:
                self.cipher()
            except MicrolibError as exc:
                raise refuse_without_key(mv.name, names, exc.message) from None

    async def check_stored(self, mv: ModelVersion, store: DataSource) -> None:
        """Refuse a version whose secret fields disagree with what the table holds.

        Checked only where it can differ: on the first publish of the model in this
        process, and for fields whose secrecy changed since the previous version.

        Raises:
            DeployRefused: plaintext under a new secret field, or ciphertext under a
                field that is no longer secret, and no ``migrate(record)``.
        """
        if mv.spec.has_migrate:
            return  # migrate() gets every record with its secrets opened, and re-seals
        entry = self.ctx.registry.find(mv.name)
        secret = set(mv.spec.secret_fields)
        if entry is None or not entry.versions:
            plain = {n for n, f in mv.spec.fields.items() if n not in secret}
            plain = {n for n in plain if mv.spec.fields[n].type.kind == "string"}
        else:
            before = set(entry.latest().spec.secret_fields)
            plain = (before - secret) & set(mv.spec.fields)
            secret = secret - before
        if not secret and not plain:
            return  # no field changed its secrecy: nothing stored can disagree
        columns = await store.columns(mv.spec.endpoint)
        secret &= columns
        plain &= columns
        if not secret and not plain:
            return
        counts = await _count_mismatches(store, mv.spec.endpoint, secret, plain)
        for name in sorted(secret):
            if counts.get(name):
                raise DeployRefused(
                    f"{mv.name}.{name} is a Secret now, but {counts[name]} stored row(s) hold "
                    "it unencrypted; define migrate(record) on the model (returning the record "
                    "is enough: every value is then validated and encrypted)",
                    field=name,
                )
        for name in sorted(plain):
            if counts.get(name):
                raise DeployRefused(
                    f"{mv.name}.{name} is not a Secret, but {counts[name]} stored row(s) hold "
                    f"it encrypted; keep it a Secret, or define migrate(record) that turns "
                    f"record[{name!r}] (a Secret) into the new value with .reveal()",
                    field=name,
                )

    # -- rotation ------------------------------------------------------------------------

    def rotate(self) -> RotationReport:
        """Re-encrypt every stored secret with the newest key, while serving.

        Covers the tables of every model published to this host (unpublished ones
        too). Values no key opens are counted in ``unreadable`` and left as they are.

        Raises:
            MicrolibError: no key is set.
        """
        return self.ctx.loop.run(self.rotate_async())

    async def rotate_async(self) -> RotationReport:
        """:meth:`rotate` on the host loop."""
        cipher = self.cipher()
        report = RotationReport()
        for entry in self.ctx.registry.entries(published_only=False):
            try:
                repo = self.ctx.repository(entry.endpoint)
            except NotFound:
                continue
            table = repo.table
            records = await repo.store.records(table)
            ids = [r["id"] for r in records if any(is_sealed(v) for v in r.values())]

            def transform(record: dict[str, Any], table: str = table) -> Any:
                return rotate_record(cipher, table, record, report)

            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                await asyncio.gather(*[repo.reseal(i, transform) for i in chunk])
        return report


async def _count_mismatches(
    store: DataSource, table: str, secret: set[str], plain: set[str]
) -> dict[str, int]:
    """Per field: secret fields holding non-sealed values, plain ones holding sealed values."""
    engine = store.sql_engine()
    if engine is None:
        counts = dict.fromkeys(secret | plain, 0)
        for record in await store.records(table):
            for name in secret:
                value = record.get(name)
                if value is not None and not is_sealed(value):
                    counts[name] += 1
            for name in plain:
                if is_sealed(record.get(name)):
                    counts[name] += 1
        return counts
    return await asyncio.to_thread(count_prefix_mismatches, engine, table, PREFIX, secret, plain)


def rotate_datasource(url: str, settings: Settings, *, dry_run: bool = False) -> RotationReport:
    """Re-encrypt every sealed value of a DuckDB datasource with the newest key (offline).

    Every ``VARCHAR`` column of every table is scanned, so no model needs to be
    published; the database is locked like a host locks it (stop the host first), and
    all changes commit in one transaction.

    Raises:
        MicrolibError: not a DuckDB file, no such file, no key, or the file is in use.
    """
    from ..store.duckdb_prefixed import rewrite_prefixed_values
    from ..store.registry import scheme_of, url_path

    if scheme_of(url) != "duckdb":
        raise MicrolibError(
            f"offline rotation reads DuckDB files; for {url} call host.secrets.rotate() in a "
            "host where its models are published"
        )
    path = url_path(url, settings)
    if path is None or not Path(path).is_file():
        raise MicrolibError(f"no DuckDB database at {path or url}: nothing to rotate")
    if not settings.secret_key:
        raise MicrolibError(f"no MICROLIB_SECRET_KEY is set; {KEY_HINT}")
    cipher = SecretCipher(settings.secret_key)
    report = RotationReport(dry_run=dry_run)

    def rotate(table: str, value: str) -> str | None:
        index = cipher.key_index(value)
        if index is None:
            report.add(table, "unreadable")
            return None
        if index == 0:
            report.add(table, "current")
            return None
        rotated = cipher.rotate(value)
        report.add(table, "rotated")
        return rotated

    rewrite_prefixed_values(path, PREFIX, rotate, dry_run=dry_run)
    return report
