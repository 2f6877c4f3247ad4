"""Command declarations: ``@command(acl=["write", "approve"])`` on a model method.

A command is a model method (sync or async) exposed over the API. Its ACL lists roles;
a caller with any one of them may run it. A command with no ACL is open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
