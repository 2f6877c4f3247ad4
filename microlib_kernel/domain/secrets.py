"""``Secret[...]`` fields: values that are masked everywhere but in Python, on purpose.

.. code-block:: python

    class Order(Model, endpoint="orders"):
        card: Secret[str]
        pin: Secret[int] | None = None

    order = await Order.create(card="4111 1111 1111 1111")
    str(order.card)          # '***'   (also repr, f-strings, logs)
    order.to_json()["card"]  # '***'   (HTTP responses, events, /config)
    order.card.reveal()      # '4111 1111 1111 1111'

A field annotated ``Secret[T]`` validates its input as ``T`` and holds a
:class:`Secret` wrapper. JSON serialisation of the wrapper is always ``"***"``; only
an explicit :meth:`Secret.reveal` gives the plaintext back. The host encrypts secret
values before they reach any datasource (see ``host/secrets.py``); the domain knows
nothing of ciphers or keys.
"""

from __future__ import annotations

import functools
import hmac
import types
import typing
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

from ..errors import MicrolibError

T = TypeVar("T")

#: What a secret value looks like in every output but Python.
MASK = "***"


class Secret(Generic[T]):
    """A value that prints, serialises and logs as ``"***"``.

    Annotate a field ``Secret[str]`` (or ``Secret[int]``, ``Secret[dict]``, ... any JSON
    type; ``Secret[...] | None`` is allowed). Assign plain values: they are validated as
    the inner type and wrapped. Read the plaintext with :meth:`reveal`.

    Two secrets are equal when their plaintexts are (compared in constant time for
    text and bytes); a secret never equals a plain value.
    """

    __slots__ = ("_problem", "_sealed", "_value")
    #: The inner type (``Any`` for a bare ``Secret``); ``domain/types.py`` looks for it.
    __microlib_secret__: ClassVar[Any] = Any

    def __init__(self, value: T) -> None:
        self._value: Any = value
        self._problem: str | None = None
        self._sealed: str | None = None

    def __class_getitem__(cls, item: Any) -> Any:
        if isinstance(item, TypeVar) or cls is not Secret:
            return super().__class_getitem__(item)  # type: ignore[misc]
        return _secret_of(item)

    @classmethod
    def unreadable(cls, sealed: str, problem: str) -> Secret[Any]:
        """A stored secret that cannot be opened (wrong key, tampered, not encrypted).

        It still masks as ``"***"``; :meth:`reveal` raises with ``problem``; writing the
        instance back keeps ``sealed`` (the stored text) unchanged, so nothing is lost.
        """
        out: Secret[Any] = Secret(None)
        out._problem = problem
        out._sealed = sealed
        return out

    @property
    def readable(self) -> bool:
        """Whether :meth:`reveal` will work."""
        return self._problem is None

    @property
    def sealed(self) -> str | None:
        """The stored text of an unreadable secret (``None`` for a readable one)."""
        return self._sealed

    def reveal(self) -> T:
        """The plaintext.

        Raises:
            MicrolibError: the stored value could not be decrypted (the reason says why).
        """
        if self._problem is not None:
            raise MicrolibError(f"this secret cannot be read: {self._problem}")
        return typing.cast(T, self._value)

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        if self._problem is not None or other._problem is not None:
            return self._problem == other._problem and self._sealed == other._sealed
        a, b = self._value, other._value
        if isinstance(a, str) and isinstance(b, str):
            return hmac.compare_digest(a.encode(), b.encode())
        if isinstance(a, bytes) and isinstance(b, bytes):
            return hmac.compare_digest(a, b)
        return bool(a == b)

    def __hash__(self) -> int:
        return hash((Secret, self._value, self._sealed))

    def __copy__(self) -> Secret[T]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret[T]:
        return self  # immutable

    # -- pydantic --------------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner_type = cls.__microlib_secret__
        inner = handler.generate_schema(inner_type)

        def validate(value: Any, inner_validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
            if isinstance(value, Secret):
                if not value.readable:
                    return value  # kept as stored; see unreadable()
                value = value._value
            return cls(inner_validate(value))

        return core_schema.no_info_wrap_validator_function(
            validate,
            inner,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize, info_arg=True, return_schema=core_schema.any_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        if handler.mode == "serialization":
            return {
                "type": "string",
                "const": MASK,
                "description": 'a secret: always masked as "***"',
            }
        out = dict(handler(schema))
        out["writeOnly"] = True
        if out.get("type") == "string":
            out.setdefault("format", "password")
        return out


def _serialize(value: Any, info: core_schema.SerializationInfo) -> Any:
    if isinstance(value, Secret) and info.mode_is_json():
        return MASK
    return value  # Python mode keeps the wrapper: model_dump() never leaks plaintext


@functools.cache
def _secret_of(inner: Any) -> type[Secret[Any]]:
    """The class ``Secret[inner]`` (one per inner type, so annotations compare equal)."""
    name = f"Secret[{_type_name(inner)}]"
    return types.new_class(
        name,
        (Secret,),
        {},
        lambda ns: ns.update(
            {
                "__microlib_secret__": inner,
                "__slots__": (),
                "__qualname__": name,
                "__module__": __name__,
            }
        ),
    )


def _type_name(t: Any) -> str:
    if isinstance(t, type):
        return t.__name__
    return repr(t).replace("typing.", "")


# -- checks used by the spec compiler ---------------------------------------------------


def is_secret_annotation(annotation: Any) -> bool:
    """Whether a field's own type is a secret (``Secret[T]``, ``Secret[T] | None``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return is_secret_annotation(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(rest) == 1 and is_secret_annotation(rest[0])
    return isinstance(annotation, type) and issubclass(annotation, Secret)


def contains_secret(annotation: Any, _depth: int = 0) -> bool:
    """Whether a ``Secret`` appears anywhere in ``annotation`` (nested models included)."""
    if _depth > 8 or annotation is None:
        return False
    if isinstance(annotation, type):
        if issubclass(annotation, Secret):
            return True
        if issubclass(annotation, BaseModel):
            return any(
                contains_secret(f.annotation, _depth + 1) for f in annotation.model_fields.values()
            )
        return False
    return any(contains_secret(a, _depth + 1) for a in typing.get_args(annotation))


def check_secret_field(model: str, name: str, annotation: Any, default: Any) -> None:
    """Refuse secrets the host could not encrypt, and defaults that sit in source code.

    Raises:
        TypeError: a ``Secret`` nested inside another type, or a non-``None`` default.
    """
    own = is_secret_annotation(annotation)
    if not own and contains_secret(annotation):
        raise TypeError(
            f"{model}.{name}: a Secret must be the field's own type (Secret[list[str]], "
            "Secret[str] | None), not nested inside a list, dict, union or model: only "
            "top-level secret fields are encrypted at rest"
        )
    if own and default is not None:
        raise TypeError(
            f"{model}.{name}: a Secret field's default must be None (a default secret would "
            "sit in plaintext in the source and in the table's column default)"
        )


def masked(value: Any) -> Any:
    """``value`` with every :class:`Secret` replaced by ``"***"`` (recursively).

    For serialising values a user returns (command results, event data) where a
    ``Secret`` object may hide inside plain dicts and lists.
    """
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value
