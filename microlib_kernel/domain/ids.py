"""Instance ids: time-ordered, URL-safe, and checked before they reach a store."""

from __future__ import annotations

import random
import re
import time

from ..errors import ValidationFailed

_random = random.Random()
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~:@+=-]{0,199}$")


def new_id() -> str:
    """A 32-character hex id: 48 bits of milliseconds then 80 random bits.

    Ids sort by creation millisecond, so listing by id lists oldest first. They are
    unique, not secret: nothing relies on them being unguessable.
    """
    return f"{(time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80):032x}"


def new_ids(count: int) -> list[str]:
    """``count`` ids made at once (``create_many``), shaped as :func:`new_id` makes them.

    One clock reading for all of them, and one draw of 80 random bits for the first;
    the others follow it one by one, as ULID's monotonic mode makes the ids of one
    millisecond. So the ids of one call sort in the order of its rows, and they share
    a long prefix: DuckDB's primary-key index takes 100,000 of them in about half the
    time it takes as many independent random ids (``bench/bulk_path.py ids``).
    """
    if count <= 0:
        return []
    millis = (time.time_ns() // 1_000_000) << 80
    # The first id leaves room for the others within the 80 bits.
    first = millis | _random.randrange((1 << 80) - count + 1)
    return [f"{n:032x}" for n in range(first, first + count)]


def is_valid_id(value: object) -> bool:
    """Whether ``value`` can be an instance id (no ``/``, no ``..``, printable, <= 200)."""
    return isinstance(value, str) and bool(_ID_RE.match(value)) and ".." not in value


def check_id(value: object) -> str:
    """Return ``value`` if it is a valid id.

    Raises:
        ValidationFailed: it could escape a folder or a URL path, or is not a string.
    """
    if not is_valid_id(value):
        raise ValidationFailed(
            f"invalid id {value!r}: ids are 1-200 characters from letters, digits and "
            "._~:@+=- , start with a letter or digit, and contain no '/' or '..'",
            errors=[{"type": "id", "loc": ["id"], "msg": "invalid id", "input": repr(value)}],
        )
    assert isinstance(value, str)
    return value
