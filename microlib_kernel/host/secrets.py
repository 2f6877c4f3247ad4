"""Encryption at rest of ``Secret`` fields, and masking of stored ciphertext in SQL.

Every secret value is sealed before it reaches a datasource: the JSON of the plaintext,
bound to where it lives (table, field, instance id), is encrypted with Fernet
(AES-128-CBC + HMAC-SHA256, an authenticated cipher from ``cryptography``) and stored as
``mlsec1:<token>``. Binding means a ciphertext copied into another row or field does
not open there. Keys come from ``MICROLIB_SECRET_KEY``: one Fernet key, or several
separated by commas, newest first (:class:`~cryptography.fernet.MultiFernet`: the first
encrypts, every one decrypts), which is how keys are rotated.

Nothing here is imported by the domain; ``cryptography`` is imported when a key is
first needed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from ..domain.secrets import MASK, Secret
from ..errors import DeployRefused, MicrolibError
from .repository import RecordCodec

if TYPE_CHECKING:
    from ..domain.model import Model
    from ..sql_result import SqlResult

log = logging.getLogger("microlib_kernel.secrets")

#: Stored secret values start with this (the version of the format, then a Fernet token).
PREFIX = "mlsec1:"
_SEALED = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_\-]*=*")

KEY_HINT = (
    "create a key with `microlib secret-key` and set MICROLIB_SECRET_KEY to it (in the "
    "environment of the host, never in source control)"
)


class SecretError(MicrolibError):
    """A sealed value that cannot be opened (unknown key, tampered, moved)."""

    status = 500


class SecretCipher:
    """Seals and opens secret values with the keys of ``MICROLIB_SECRET_KEY``.

    Args:
        keys: one Fernet key, or several separated by commas, newest first.

    Raises:
        MicrolibError: no key, or a key that is not a Fernet key (the key itself is
            never repeated in the message).
    """

    def __init__(self, keys: str) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        parts = [k.strip() for k in (keys or "").split(",") if k.strip()]
        if not parts:
            raise MicrolibError(f"MICROLIB_SECRET_KEY is empty; {KEY_HINT}")
        fernets = []
        for position, key in enumerate(parts, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise MicrolibError(
                    f"key {position} of MICROLIB_SECRET_KEY is not a Fernet key (32 url-safe "
                    f"base64-encoded bytes); {KEY_HINT}"
                ) from None
        self._fernets = fernets
        self._multi = MultiFernet(fernets)

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def seal(self, value: Any, *, table: str, field: str, id: str) -> str:
        """Encrypt ``value`` (JSON-able) for ``table.field`` of instance ``id``."""
        payload = json.dumps(
            {"t": table, "f": field, "i": id, "v": value}, separators=(",", ":")
        ).encode()
        return PREFIX + self._multi.encrypt(payload).decode("ascii")

    def open(self, text: str, *, table: str, field: str, id: str) -> Any:
        """The plaintext (JSON) of a sealed value.

        Raises:
            SecretError: not sealed, no key opens it, or it was sealed for another place.
        """
        from cryptography.fernet import InvalidToken

        if not isinstance(text, str) or not text.startswith(PREFIX):
            raise SecretError("the stored value is not encrypted (it was not written by microlib)")
        try:
            payload = json.loads(self._multi.decrypt(text[len(PREFIX) :].encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise SecretError(
                "no key in MICROLIB_SECRET_KEY opens it (a key was removed or replaced too "
                "early, or the stored value was altered)"
            ) from None
        where = (payload.get("t"), payload.get("f"), payload.get("i"))
        if where != (table, field, id):
            raise SecretError(
                f"it was encrypted for {where[0]}.{where[1]} of {where[2]}, not for "
                f"{table}.{field} of {id} (a value moved between rows or fields)"
            )
        return payload.get("v")

    def key_index(self, text: str) -> int | None:
        """Which key (0 = newest) opens a sealed value, or ``None`` if none does."""
        from cryptography.fernet import InvalidToken

        token = text[len(PREFIX) :].encode("ascii", "replace")
        for index, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(token)
                return index
            except InvalidToken:
                continue
        return None

    def rotate(self, text: str) -> str:
        """The same sealed value, re-encrypted with the newest key.

        Raises:
            SecretError: no key opens it.
        """
        from cryptography.fernet import InvalidToken

        try:
            token = self._multi.rotate(text[len(PREFIX) :].encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretError("no key in MICROLIB_SECRET_KEY opens it") from None
        return PREFIX + token.decode("ascii")


def is_sealed(value: Any) -> bool:
    """Whether a stored value is a sealed secret."""
    return isinstance(value, str) and value.startswith(PREFIX)


class SecretCodec(RecordCodec):
    """The repository codec of a table: seals secret fields on write, opens them on read.

    A value that cannot be opened is read as an *unreadable* :class:`Secret` (masked as
    usual; ``reveal()`` says why), so one bad row never fails a list, and writing the
    instance back keeps the stored text unchanged.
    """

    def __init__(self, cipher: Callable[[], SecretCipher], table: str) -> None:
        self._cipher = cipher
        self.table = table
        self._fields: dict[type, tuple[str, ...]] = {}

    def _secret_fields(self, cls: type[Model]) -> tuple[str, ...]:
        names = self._fields.get(cls)
        if names is None:
            names = self._fields[cls] = cls.spec().secret_fields
        return names

    def encode(self, instance: Model) -> dict[str, Any]:
        record = instance.model_dump(mode="json")
        names = self._secret_fields(type(instance))
        if not names:
            return record
        cipher = self._cipher()
        for name in names:
            value = getattr(instance, name)
            if value is None:
                record[name] = None
            elif isinstance(value, Secret) and not value.readable:
                record[name] = value.sealed
            else:
                plain = value.reveal() if isinstance(value, Secret) else value
                record[name] = cipher.seal(
                    to_jsonable_python(plain), table=self.table, field=name, id=instance.id
                )
        return record

    def plain(self, cls: type[Model]) -> bool:
        return not self._secret_fields(cls)

    def decode(self, cls: type[Model], record: dict[str, Any]) -> dict[str, Any]:
        names = self._secret_fields(cls)
        if not names:
            return record
        out = dict(record)
        for name in names:
            value = out.get(name)
            if value is not None:
                out[name] = self._open(name, value, str(record.get("id")))
        return out

    def stored_values(self, record: dict[str, Any]) -> dict[str, Any]:
        """Every sealed value of ``record`` opened into a :class:`Secret` (for migrate)."""
        rid = str(record.get("id"))
        return {k: self._open(k, v, rid) if is_sealed(v) else v for k, v in record.items()}

    def _open(self, name: str, value: Any, id: str) -> Secret[Any]:
        try:
            return Secret(self._cipher().open(value, table=self.table, field=name, id=id))
        except MicrolibError as exc:
            log.warning("%s/%s.%s cannot be decrypted: %s", self.table, id, name, exc.message)
            return Secret.unreadable(str(value), exc.message)


# -- masking ------------------------------------------------------------------------------


def mask_sealed(value: Any) -> Any:
    """``value`` with every sealed secret (whole or cut, even inside text) as ``"***"``."""
    if isinstance(value, str):
        return _SEALED.sub(MASK, value) if PREFIX in value else value
    if isinstance(value, list):
        return [mask_sealed(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_sealed(v) for v in value)
    if isinstance(value, dict):
        return {mask_sealed(k): mask_sealed(v) for k, v in value.items()}
    return value


def mask_result(result: SqlResult) -> SqlResult:
    """Mask sealed values in a SQL result, in place.

    Whatever the query did (``SELECT *``, aliases, CTEs, ``to_json``, string functions),
    a sealed value that reaches the result whole, or cut from its start, is masked:
    values are inspected, not column names. Columns holding none are only scanned.
    """
    rows = result.rows
    if not rows:
        return result
    width = len(rows[0])
    touched = [i for i in range(width) if any(_holds_sealed(row[i]) for row in rows)]
    if touched:
        for r, row in enumerate(rows):
            cells = list(row)
            for i in touched:
                cells[i] = mask_sealed(cells[i])
            rows[r] = tuple(cells)
    return result


def _holds_sealed(value: Any) -> bool:
    if isinstance(value, str):
        return PREFIX in value
    if isinstance(value, list | tuple):
        return any(_holds_sealed(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_sealed(k) or _holds_sealed(v) for k, v in value.items())
    return False


@dataclass
class RotationReport:
    """What a key rotation did, per table.

    Attributes:
        rotated: values re-encrypted with the newest key.
        current: values already encrypted with it.
        unreadable: values no key opens (left as they are).
    """

    rotated: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def add(self, table: str, kind: str, n: int = 1) -> None:
        counts: dict[str, int] = getattr(self, kind)
        counts[table] = counts.get(table, 0) + n

    @property
    def ok(self) -> bool:
        """Whether every sealed value now opens with the newest key."""
        return not any(self.unreadable.values())

    def to_json(self) -> dict[str, Any]:
        return {"rotated": self.rotated, "current": self.current, "unreadable": self.unreadable}

    def __str__(self) -> str:
        tables = sorted(set(self.rotated) | set(self.current) | set(self.unreadable))
        if not tables:
            return "no encrypted values found"
        done = "to re-encrypt" if self.dry_run else "re-encrypted"
        lines = [
            f"{t}: {self.rotated.get(t, 0)} {done}, {self.current.get(t, 0)} already "
            f"current, {self.unreadable.get(t, 0)} unreadable"
            for t in tables
        ]
        return "\n".join(lines)


def rotate_record(
    cipher: SecretCipher, table: str, record: dict[str, Any], report: RotationReport
) -> dict[str, Any] | None:
    """``record`` with its sealed values re-encrypted with the newest key (``None``: no change)."""
    changed = False
    out = dict(record)
    for name, value in record.items():
        if not is_sealed(value):
            continue
        index = cipher.key_index(value)
        if index is None:
            report.add(table, "unreadable")
        elif index == 0:
            report.add(table, "current")
        else:
            out[name] = cipher.rotate(value)
            report.add(table, "rotated")
            changed = True
    return out if changed else None


def refuse_without_key(model: str, names: tuple[str, ...], problem: str | None) -> DeployRefused:
    """The error of publishing a model with secrets on a host without a usable key."""
    what = f"{model} has Secret field{'s' if len(names) > 1 else ''} {', '.join(names)}"
    if problem is None:
        return DeployRefused(
            f"{what} but no MICROLIB_SECRET_KEY is set; {KEY_HINT}", hint="microlib secret-key"
        )
    return DeployRefused(f"{what}: {problem}", hint="microlib secret-key")
