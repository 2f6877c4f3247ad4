"""Relation declarations: ``customer = relation("Customer", "many_to_one", foreign_key=...)``.

A relation links a model to another published model (Aegis "federated" models). It
becomes an awaitable method on instances; resolving it is the host's job, through the
target model's own datasource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RelationKind = Literal["many_to_one", "one_to_one", "one_to_many", "contains_many"]
RELATION_KINDS: tuple[str, ...] = ("many_to_one", "one_to_one", "one_to_many", "contains_many")


@dataclass(frozen=True)
class RelationSpec:
    """A declared relation (data).

    Attributes:
        target: the related model's class name.
        kind: ``many_to_one`` (this model holds ``foreign_key``), ``one_to_one``
            (this model holds ``foreign_key`` when it is one of its fields, else the
            target holds it = this id: the reverse side of a one-to-one),
            ``one_to_many`` (the target holds ``foreign_key`` = this id), or
            ``contains_many`` (this model's ``array_key`` lists items whose
            ``foreign_key`` holds target ids; without ``array_key``, ``foreign_key``
            is a list field of target ids).
        foreign_key: the field holding the id.
        array_key: for ``contains_many`` over a list of objects.
        name: the attribute name (set when the class is built).
        description: free text shown in ``/config``.
    """

    target: str
    kind: RelationKind
    foreign_key: str
    array_key: str | None = None
    name: str = ""
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "kind": self.kind,
            "foreign_key": self.foreign_key,
            "array_key": self.array_key,
            "description": self.description,
        }


class RelationDeclaration:
    """The class attribute ``relation(...)`` returns; becomes a method on instances."""

    def __init__(self, spec: RelationSpec) -> None:
        self.spec = spec

    def __set_name__(self, owner: type, name: str) -> None:
        self.spec = RelationSpec(**{**self.spec.__dict__, "name": name})

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        name = self.spec.name

        async def related(*create: dict[str, Any]) -> Any:
            return await type(instance)._runtime().related(instance, name, list(create))

        related.__name__ = name
        related.__doc__ = (
            f"The related {self.spec.target} ({self.spec.kind}); "
            "called with dicts, creates related instances and links them."
        )
        return related

    def __repr__(self) -> str:
        return f"relation({self.spec.target!r}, {self.spec.kind!r}, name={self.spec.name!r})"


def relation(
    target: str,
    kind: RelationKind,
    *,
    foreign_key: str,
    array_key: str | None = None,
    description: str = "",
) -> Any:
    """Declare a relation to another model (by class name).

    Raises:
        TypeError: an unknown kind or a missing key (reported at class definition).
    """
    if not isinstance(target, str) or not target.isidentifier():
        raise TypeError(f"relation target must be a model class name, got {target!r}")
    if kind not in RELATION_KINDS:
        raise TypeError(f"relation kind must be one of {', '.join(RELATION_KINDS)}, got {kind!r}")
    if not isinstance(foreign_key, str) or not foreign_key:
        raise TypeError(f"relation foreign_key must be a field name, got {foreign_key!r}")
    if array_key is not None and kind != "contains_many":
        raise TypeError("relation array_key only applies to contains_many")
    return RelationDeclaration(
        RelationSpec(target, kind, foreign_key, array_key, description=description)
    )
