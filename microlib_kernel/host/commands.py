"""Commands: model methods exposed over the API, guarded by an ACL of roles."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..domain.events import Event
from ..errors import Forbidden, NotFound, ValidationFailed

if TYPE_CHECKING:
    from ..domain.model import Model
    from .host import Host
    from .registry import ModelVersion


class CommandRunner:
    """Runs commands for the host: checks the ACL, binds arguments, calls, reports."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def check(self, planned: list[ModelVersion]) -> None:
        """Publish-time checks of commands (each names a callable)."""
        for mv in planned:
            for name, spec in mv.spec.commands.items():
                if not callable(getattr(mv.cls, name, None)) and spec.function is None:
                    raise ValidationFailed(
                        f"{mv.name}.{name} is declared as a command but is not callable"
                    )

    async def run(
        self,
        mv: ModelVersion,
        instance: Model,
        name: str,
        kwargs: dict[str, Any],
        roles: Iterable[str] | None = None,
    ) -> Any:
        """Run command ``name`` on ``instance`` for a caller with ``roles``.

        Returns:
            The command's return value, or the instance after the command when it
            returns ``None``.

        Raises:
            NotFound: no such command.
            Forbidden: the caller has none of its roles (emits ``{model}.command_denied``).
            ValidationFailed: arguments that do not fit its signature.
        """
        spec = mv.spec.commands.get(name)
        if spec is None:
            known = ", ".join(mv.spec.commands) or "none"
            raise NotFound(f"{mv.name} has no command {name!r}; commands: {known}", command=name)
        role_list = None if roles is None else [r.strip() for r in roles if r and r.strip()]
        if not spec.allows(role_list):
            self.host.events.publish(
                Event(
                    f"{mv.spec.event_prefix}.command_denied",
                    {"command": name, "roles": role_list or [], "acl": list(spec.acl)},
                    model=mv.name,
                    model_id=instance.id,
                )
            )
            raise Forbidden(
                f"command {name!r} needs one of the roles {', '.join(spec.acl)}",
                command=name,
                acl=list(spec.acl),
            )
        fn = getattr(instance, name)
        if not isinstance(kwargs, dict):
            raise ValidationFailed(f"command {name!r} takes an object of keyword arguments")
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as exc:
            raise ValidationFailed(f"bad arguments for command {name!r}: {exc}") from None
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return await self.host.repository(mv.spec.endpoint).get(mv, instance.id)
        return result
