"""Command declarations: ``@command(acl=["write", "approve"])`` on a model method.

A command is a model method (sync or async) exposed over the API. Its ACL lists roles;
a caller with any one of them may run it. A command with no ACL is open. Commands can
also be plain functions given to the class: ``class Order(Model, commands={...})``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

_MARK = "__microlib_command__"


@dataclass(frozen=True)
class CommandSpec:
    """A declared command (data)."""

    name: str
    acl: tuple[str, ...] = ()
    description: str = ""
    function: Callable[..., Any] | None = field(default=None, compare=False)

    def allows(self, roles: Iterable[str] | None) -> bool:
        """Whether a caller with ``roles`` may run it (``None`` means every role)."""
        if not self.acl or roles is None:
            return True
        return bool(set(self.acl) & {r.strip() for r in roles})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "acl": list(self.acl), "description": self.description}


@overload
def command(fn: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def command(
    *, acl: Iterable[str] | str | None = None, description: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def command(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    acl: Iterable[str] | str | None = None,
    description: str = "",
) -> Any:
    """Mark a model method as a command; works bare (``@command``) or called.

    Args:
        acl: roles allowed to run it (any one suffices); ``None``/empty: open.
        description: shown in ``/config`` (defaults to the docstring's first line).
    """
    roles: tuple[str, ...]
    if acl is None:
        roles = ()
    elif isinstance(acl, str):
        roles = (acl,)
    else:
        roles = tuple(acl)
    if not all(isinstance(r, str) and r.strip() for r in roles):
        raise TypeError(f"command acl must be role names, got {acl!r}")

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise TypeError(f"@command decorates a method, got {f!r}")
        doc = description or (f.__doc__ or "").strip().split("\n")[0]
        setattr(f, _MARK, CommandSpec(f.__name__, tuple(r.strip() for r in roles), doc))
        return f

    return mark(fn) if fn is not None else mark


def command_spec_of(obj: Any) -> CommandSpec | None:
    """The spec attached by :func:`command`, if any."""
    return getattr(obj, _MARK, None)


def install_commands(cls: type, commands: Mapping[str, Any] | None) -> None:
    """Attach commands given as functions (``commands={"name": fn}`` on the class).

    Each value is ``fn(instance, **kwargs)`` (sync or async), or a dict
    ``{"fn": fn, "acl": [...], "description": "..."}`` (``"command"`` is accepted for
    ``"fn"``, as in Aegis specs). Each becomes a method of the class, marked like an
    ``@command`` method, so ``instance.name(**kwargs)`` works and the spec lists it.

    Raises:
        TypeError: a malformed entry, or a name the class already uses.
    """
    if commands is None:
        return
    if not isinstance(commands, Mapping):
        raise TypeError(
            f"{cls.__name__}: commands= takes a dict of name -> function, got {commands!r}"
        )
    for name, entry in commands.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{cls.__name__}: command names are identifiers, got {name!r}")
        if isinstance(entry, Mapping):
            unknown = sorted(set(entry) - {"fn", "command", "acl", "description"})
            if unknown:
                raise TypeError(
                    f"{cls.__name__}.{name}: unknown command option(s) {', '.join(unknown)}; "
                    "use fn, acl, description"
                )
            fn = entry.get("fn", entry.get("command"))
            acl = entry.get("acl")
            description = entry.get("description", "")
        else:
            fn, acl, description = entry, None, ""
        if not callable(fn) or isinstance(fn, type):
            raise TypeError(
                f"{cls.__name__}.{name}: a command is a function fn(instance, **kwargs), got {fn!r}"
            )
        fields = getattr(cls, "model_fields", {})
        if name in fields or name in vars(cls):
            raise TypeError(
                f"{cls.__name__}: command {name!r} clashes with a field or attribute of the "
                "same name"
            )
        setattr(cls, name, command(acl=acl, description=description)(_as_method(fn, name)))


def _as_method(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    # A plain wrapper (not fn itself): callable objects and builtins do not bind as
    # methods, and the mark must not land on a function shared with other models.
    @functools.wraps(fn)
    def method(self: Any, /, **kwargs: Any) -> Any:
        return fn(self, **kwargs)

    method.__name__ = name
    method.__qualname__ = name
    return method
