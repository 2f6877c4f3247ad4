"""``HostApi``: what the HTTP edge may use of a host.

The HTTP app is built from this, not from the ``Host``: the routes see the context
(registry, repositories, events, settings, lifecycle) and the services they call, and
nothing of how the host wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .commands import CommandRunner
    from .config_view import ConfigView
    from .context import HostContext
    from .ports import PortRunner
    from .queries import SqlQueries
    from .relations import RelationResolver
    from .rollout import Rollout


@dataclass(frozen=True)
class HostApi:
    """The services behind the HTTP routes of one host.

    Attributes:
        ctx: the host's context.
        commands: runs ``PATCH /{endpoint}/{id}/{command}``.
        ports: runs inbound ports.
        relations: resolves ``GET /{endpoint}/{id}/{relation}``.
        rollout: deploys, rollbacks, routes, unpublishes; the deploy history, the
            restore report and the cluster link.
        config: renders ``/config`` entries.
        queries: ``POST /sql``.
        deploy_token: the token the deploy routes require.
    """

    ctx: HostContext
    commands: CommandRunner
    ports: PortRunner
    relations: RelationResolver
    rollout: Rollout
    config: ConfigView
    queries: SqlQueries
    deploy_token: Callable[[], str]
