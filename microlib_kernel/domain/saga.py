"""Port flows and sagas as pure functions over port specs.

A flow is the chain of ports an instance runs: a port ``consumes`` an event and, when it
completes, ``produces`` the next one. ``port_flow`` records the ports an instance
completed, in order. From these two facts follow:

* which ports an event starts (:func:`consumers`),
* whether an instance's flow was interrupted, and which events resume it
  (:func:`resume_events`),
* the compensation plan of a saga: each completed port's ``undo``, in reverse order
  (:func:`plan_compensation`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .ports import PortSpec


def consumes(spec: PortSpec, event: str) -> bool:
    """Whether ``spec`` runs when ``event`` is emitted (``consumes`` may be a glob)."""
    return (
        spec.consumes is not None
        and not spec.disabled
        and fnmatch.fnmatchcase(event, spec.consumes)
    )


def consumers(ports: Mapping[str, PortSpec], event: str) -> list[str]:
    """Names of the enabled ports that ``event`` starts, in declaration order."""
    return [name for name, spec in ports.items() if consumes(spec, event)]


def resume_events(
    port_flow: Sequence[str], compensation: str | None, ports: Mapping[str, PortSpec]
) -> list[str]:
    """The events that resume an interrupted flow (empty: nothing to resume).

    A flow is interrupted when no saga touched the instance and a port it completed
    produced an event that starts a port it has not completed. In a chain that is the
    last completed port's event; when a flow fans out (two ports consume one event),
    every branch left behind is found. Re-emitting these events runs exactly the
    missing ports (the orchestrator skips ports already in the flow), so nothing that
    completed runs twice.
    """
    if compensation is not None or not port_flow:
        return []
    done = set(port_flow)
    out: list[str] = []
    for name in reversed(port_flow):
        spec = ports.get(name)
        if spec is None or spec.produces is None or spec.produces in out:
            continue
        if any(c not in done for c in consumers(ports, spec.produces)):
            out.append(spec.produces)
    out.reverse()
    return out


@dataclass(frozen=True)
class UndoStep:
    """One compensation step.

    Attributes:
        port: the completed port being compensated.
        adapter: its ``undo`` adapter.
        remaining: ``port_flow`` once this step succeeded (everything before the port;
            ports without ``undo`` after it are dropped).
        if_failed: ``port_flow`` if this step fails (the port and everything before it).
    """

    port: str
    adapter: str
    remaining: tuple[str, ...]
    if_failed: tuple[str, ...]


def plan_compensation(port_flow: Sequence[str], ports: Mapping[str, PortSpec]) -> list[UndoStep]:
    """The undo steps of a saga, last completed port first.

    Ports without an ``undo`` (or no longer declared) are dropped from the flow: there
    is nothing to call for them. When every step succeeds the flow ends empty.
    """
    steps = []
    for index in range(len(port_flow) - 1, -1, -1):
        spec = ports.get(port_flow[index])
        if spec is None or spec.undo is None:
            continue
        steps.append(
            UndoStep(
                port=port_flow[index],
                adapter=spec.undo,
                remaining=tuple(port_flow[:index]),
                if_failed=tuple(port_flow[: index + 1]),
            )
        )
    return steps
