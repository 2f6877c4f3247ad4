"""The ``Model`` base class: a pydantic v2 model plus framework fields and async data methods.

.. code-block:: python

    class Order(Model, endpoint="orders"):
        items: list[dict] = Field(min_length=1)
        total: float = 0.0

    order = await Order.create(items=[{"sku": "a"}])
    order = await order.update(total=3.5)

Instances are immutable snapshots: ``update`` returns the new state and leaves the old
snapshot as it was. Data methods work once the class is published to a host (which
gives it a runtime); they may be awaited from any thread or event loop.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json as render_json

from ..errors import MicrolibError
from .ports import PortDeclaration
from .relations import RelationDeclaration
from .spec import ModelSpec, compile_spec

if TYPE_CHECKING:
    from .events import Event, Handler, Pattern, Subscription
    from .runtime import ModelRuntime

Compensation = Literal["running", "complete", "incomplete"]

#: Fields every instance has; the framework sets them, users cannot.
FRAMEWORK_FIELDS: tuple[str, ...] = (
    "id",
    "created_at",
    "updated_at",
    "version",
    "revision",
    "port_flow",
    "compensation",
)


class Model(BaseModel):
    """Base class of every domain model.

    Class keywords:
        endpoint: the URL segment and table name (default: the snake-case plural name).
        datasource: a datasource URL for this model alone (default: the host's).
        commands: commands given as functions, ``{"name": fn}`` or
            ``{"name": {"fn": fn, "acl": [...]}}``; ``fn(instance, **kwargs)``.

    Framework fields: ``id``, ``created_at``, ``updated_at``, ``version`` (the spec
    version that last wrote it), ``revision`` (bumped by every write), ``port_flow``
    (ports completed, for undo and resume) and ``compensation``.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        ignored_types=(PortDeclaration, RelationDeclaration),
        populate_by_name=True,
    )

    __microlib_endpoint__: ClassVar[str]
    __microlib_datasource__: ClassVar[str | None] = None
    __microlib_commands__: ClassVar[Mapping[str, Any] | None] = None
    __microlib_spec__: ClassVar[ModelSpec]
    __microlib_runtime__: ClassVar[ModelRuntime[Model] | None] = None

    id: str = Field(default="", description="Instance id (set by the framework).")
    created_at: dt.datetime | None = Field(default=None, description="When it was created.")
    updated_at: dt.datetime | None = Field(default=None, description="When it last changed.")
    version: str | None = Field(default=None, description="Model version that last wrote it.")
    revision: int = Field(default=0, description="Bumped by every write (optimistic locking).")
    port_flow: builtins.list[str] = Field(
        default_factory=builtins.list, description="Ports completed, in order."
    )
    compensation: Compensation | None = Field(
        default=None, description="Saga compensation state, None until one starts."
    )

    def __init_subclass__(
        cls,
        *,
        endpoint: str | None = None,
        datasource: str | None = None,
        commands: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.__microlib_endpoint__ = endpoint or default_endpoint(cls.__name__)
        cls.__microlib_datasource__ = datasource
        cls.__microlib_commands__ = commands
        # A subclass is a new model: it is not published with its parent.
        cls.__microlib_runtime__ = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        from .commands import install_commands

        install_commands(cls, cls.__microlib_commands__)
        # Compile now so a bad declaration fails where the class is written.
        cls.__microlib_spec__ = compile_spec(
            cls, Model, cls.__microlib_endpoint__, cls.__microlib_datasource__
        )

    # -- plumbing --------------------------------------------------------------------

    @classmethod
    def _runtime(cls) -> ModelRuntime[Model]:
        runtime = cls.__microlib_runtime__
        if runtime is None:
            raise MicrolibError(
                f"{cls.__name__} is not published: run host.publish({cls.__name__}) or define it "
                "in a %%microlib model cell"
            )
        return runtime

    @classmethod
    def spec(cls) -> ModelSpec:
        """The compiled :class:`~microlib_kernel.domain.spec.ModelSpec` of this class."""
        return cls.__microlib_spec__

    # -- data operations ---------------------------------------------------------------

    @classmethod
    async def create(cls, **data: Any) -> Self:
        """Validate, persist and return a new instance; emits ``{model}.created``.

        Raises:
            ValidationFailed: the data does not validate (pydantic details in ``errors``).
        """
        return cast(Self, await cls._runtime().create(data))

    @classmethod
    async def create_many(cls, rows: Iterable[dict[str, Any]]) -> builtins.list[Self]:
        """Create many instances in one bulk write: all validate and are stored, or none.

        Raises:
            ValidationFailed: a row does not validate (nothing is stored).
        """
        created = await cls._runtime().create_many(builtins.list(rows))
        return cast(builtins.list[Self], created)

    @classmethod
    async def find(cls, id: str) -> Self:
        """The instance with this id.

        Raises:
            NotFound: there is none.
        """
        return cast(Self, await cls._runtime().find(id))

    @classmethod
    async def list(
        cls,
        *,
        limit: int | None = None,
        offset: int = 0,
        order: str | Sequence[str] | None = None,
        **filters: Any,
    ) -> builtins.list[Self]:
        """Instances matching exact-value ``filters``, paged and ordered.

        Args:
            limit: at most this many (``None``: all).
            offset: skip this many first.
            order: a field name, ``-field`` for descending, or a list of them
                (default: creation order).
            **filters: ``field=value`` exact matches.

        Raises:
            BadQuery: an unknown field.
        """
        found = await cls._runtime().list(filters, limit=limit, offset=offset, order=order)
        return cast(builtins.list[Self], found)

    @classmethod
    async def count(cls, **filters: Any) -> int:
        """How many instances match ``filters``."""
        return await cls._runtime().count(filters)

    async def update(self, **changes: Any) -> Self:
        """Validate ``changes``, run ``on_update``, persist; returns the new state.

        Raises:
            ValidationFailed: the changes do not validate.
            Conflict: the instance changed since this snapshot was read.
        """
        return cast(Self, await type(self)._runtime().update(self, changes))

    async def delete(self) -> Self:
        """Delete this instance (``on_delete`` may veto); returns it.

        Raises:
            Vetoed: ``on_delete`` raised.
        """
        return cast(Self, await type(self)._runtime().delete(self))

    async def emit(self, name: str, data: Any = None) -> Event:
        """Publish an event about this instance on the host's broker."""
        return await type(self)._runtime().emit(self, name, data)

    async def undo(self) -> Self:
        """Compensate the completed ports in reverse order (a saga); returns the new state."""
        return cast(Self, await type(self)._runtime().undo(self))

    async def run_command(
        self, name: str, *, roles: Iterable[str] | None = None, **kwargs: Any
    ) -> Any:
        """Run command ``name`` with keyword arguments, as a caller holding ``roles``.

        This is what the HTTP API does for ``PATCH .../{id}/{command}``; calling the
        method directly (``await order.approve()``) skips the ACL, as the owner may.

        Args:
            roles: the caller's roles (a list, or ``"a,b"``); ``None`` means every role.

        Returns:
            The command's return value, or the instance after the command when it
            returns ``None``.

        Raises:
            NotFound: no such command.
            Forbidden: ``roles`` holds none of the command's ACL roles (a
                ``{model}.command_denied`` event is emitted).
            ValidationFailed: arguments that do not fit, or the command raised
                ``ValueError``.
        """
        return await type(self)._runtime().run_command(self, name, kwargs, roles)

    @classmethod
    def on(cls, pattern: Pattern, handler: Handler) -> Subscription:
        """Subscribe ``handler`` to events matching ``pattern`` on the host's broker.

        Subscribing the same function again (say, by re-running a cell) replaces the
        earlier subscription instead of adding a second one.
        """
        return cls._runtime().on(pattern, handler)

    @classmethod
    def sql(cls, query: str, params: Any = None) -> Any:
        """Run read-only SQL over the host's model tables; returns a ``SqlResult``."""
        return cls._runtime().sql(query, params)

    # -- hooks (override) --------------------------------------------------------------

    def on_update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Called before an update commits, with ``self`` the state before it.

        Return the changes to apply (sync or async). Raise ``ValueError`` to refuse.
        """
        return changes

    def on_delete(self) -> None:
        """Called before a delete commits. Raise to veto it (sync or async)."""
        return None

    # -- conveniences --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The instance as JSON-able data (secret values masked)."""
        return self.model_dump(mode="json")

    def json_bytes(self) -> bytes:
        """The instance as UTF-8 JSON text: ``to_json()`` rendered (what the HTTP API
        answers), in one pydantic-core call that makes no dict on the way.

        Strict JSON: a float that is not finite is written as the model's
        ``ser_json_inf_nan`` says (``null`` by default). A model that overrides
        ``to_json`` or ``model_dump`` is rendered from its ``to_json()``.
        """
        cls = type(self)
        if cls.to_json is not Model.to_json or cls.model_dump is not BaseModel.model_dump:
            return render_json(self.to_json(), fallback=str, inf_nan_mode="null")
        return self.__pydantic_serializer__.to_json(self)


def default_endpoint(class_name: str) -> str:
    """``OrderItem`` -> ``order_items``; leading underscores go (``_Base`` -> ``bases``)."""
    class_name = class_name.lstrip("_") or "model"
    out = []
    for i, ch in enumerate(class_name):
        if ch.isupper() and i and not class_name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    word = "".join(out)
    if word.endswith("s"):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"
