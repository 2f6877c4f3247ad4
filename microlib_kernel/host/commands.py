"""Commands: model methods exposed over the API, guarded by an ACL of roles.

A caller may run a command when it holds any one of the command's roles; a command
without an ACL is open. ``roles=None`` means every role (the Python API: the caller
owns the host). A denied call raises ``Forbidden`` and emits ``{model}.command_denied``.

Async commands run on the host loop; sync ones in a worker thread, so a slow command
never stalls the loop that serves HTTP (and may call the host's synchronous methods).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..domain.events import Event
from ..errors import DeployRefused, Forbidden, MicrolibError, NotFound, ValidationFailed

if TYPE_CHECKING:
    from ..domain.model import Model
    from .context import HostContext
    from .registry import ModelVersion


def normalize_roles(roles: Iterable[str] | str | None) -> list[str] | None:
    """Roles as a clean list: ``"a, b"`` and ``["a", " b"]`` give ``["a", "b"]``."""
    if roles is None:
        return None
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    if not all(isinstance(r, str) for r in items):
        raise ValidationFailed(f"roles are strings, got {roles!r}")
    return [r.strip() for r in items if r.strip()]


class CommandRunner:
    """Runs commands for the host: checks the ACL, binds arguments, calls, reports."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    def check(self, planned: list[ModelVersion]) -> None:
        """Publish-time checks of commands (each names a callable).

        Raises:
            DeployRefused: a declared command that is not callable.
        """
        for mv in planned:
            for name, spec in mv.spec.commands.items():
                if not callable(getattr(mv.cls, name, None)) and spec.function is None:
                    raise DeployRefused(
                        f"{mv.name}.{name} is declared as a command but is not callable",
                        command=name,
                    )

    def allowed(self, mv: ModelVersion, name: str, roles: Iterable[str] | str | None) -> bool:
        """Whether a caller holding ``roles`` may run ``name`` (``False`` if unknown)."""
        spec = mv.spec.commands.get(name)
        return spec is not None and spec.allows(normalize_roles(roles))

    async def run(
        self,
        mv: ModelVersion,
        instance: Model,
        name: str,
        kwargs: dict[str, Any],
        roles: Iterable[str] | str | None = None,
    ) -> Any:
        """Run command ``name`` on ``instance`` for a caller with ``roles``.

        Returns:
            The command's return value, or the instance after the command when it
            returns ``None`` (``None`` if the command deleted it).

        Raises:
            NotFound: no such command.
            Forbidden: the caller has none of its roles (emits ``{model}.command_denied``).
            ValidationFailed: arguments that do not fit its signature, or the command
                raised ``ValueError`` (a refusal, like a hook's).
        """
        spec = mv.spec.commands.get(name)
        if spec is None:
            known = ", ".join(mv.spec.commands) or "none"
            raise NotFound(f"{mv.name} has no command {name!r}; commands: {known}", command=name)
        role_list = normalize_roles(roles)
        if not spec.allows(role_list):
            self.ctx.events.publish(
                Event(
                    f"{mv.spec.event_prefix}.command_denied",
                    {"command": name, "roles": role_list or [], "acl": list(spec.acl)},
                    model=mv.name,
                    model_id=instance.id,
                )
            )
            raise Forbidden(
                f"command {name!r} of {mv.name} needs one of the roles {', '.join(spec.acl)}"
                + (f"; the caller has {', '.join(role_list)}" if role_list else "; none given"),
                command=name,
                acl=list(spec.acl),
            )
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ValidationFailed(f"command {name!r} takes an object of keyword arguments")
        fn = getattr(instance, name)
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as exc:
            raise ValidationFailed(f"bad arguments for command {name!r}: {exc}") from None
        except ValueError:
            pass  # no signature to check (a builtin): let the call say
        try:
            if inspect.iscoroutinefunction(inspect.unwrap(fn)):
                result = await fn(**kwargs)
            else:
                result = await asyncio.to_thread(fn, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except MicrolibError:
            raise
        except ValueError as exc:
            raise ValidationFailed(f"command {name!r} of {mv.name} refused: {exc}") from None
        if result is None:
            try:
                return await self.ctx.repository(mv.spec.endpoint).get(mv, instance.id)
            except NotFound:
                return None  # the command deleted it
        return result
