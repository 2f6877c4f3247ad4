"""``validate_fresh`` gives exactly the instances that validating each row with its
framework values gives, whether it validates them with the rows or sets them after."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pytest
from pydantic import (
    AfterValidator,
    AliasChoices,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from microlib_kernel import Model
from microlib_kernel.domain.ids import new_ids
from microlib_kernel.host.bulk import (
    framework_set_after,
    share_fields_sets,
    validate_fresh,
    validate_many,
)

NOW = dt.datetime(2026, 12, 7, 17, 0, 0, 123456, tzinfo=dt.UTC)
FRAMEWORK = {
    "created_at": NOW,
    "updated_at": NOW,
    "version": "1.0.0",
    "revision": 1,
    "port_flow": [],
    "compensation": None,
}


class Plain(Model, endpoint="plains"):
    name: str
    qty: int = 0
    tags: list[str] = Field(default_factory=list)
    note: str | None = None


class Checked(Model, endpoint="checkeds"):
    name: str

    @field_validator("name")
    @classmethod
    def strip(cls, value: str) -> str:
        return value.strip()


class Shouting(Model, endpoint="shoutings"):
    model_config = ConfigDict(str_to_upper=True)
    name: str


class SeesFramework(Model, endpoint="seers"):
    name: str

    @model_validator(mode="before")
    @classmethod
    def label(cls, data: Any) -> Any:
        return {**data, "name": f"{data['name']}@{data.get('version')}"}


class Posted(Model, endpoint="posteds"):
    name: str

    def model_post_init(self, context: Any) -> None:
        object.__setattr__(self, "name", self.name + "!")


class Loose(Model, endpoint="looses"):
    model_config = ConfigDict(frozen=False, title="loose")  # neither changes validation
    name: str


# Found by a review: each reads a framework value during validation, not through a
# decorated validator.
class Slugged(Model, endpoint="sluggeds"):
    name: str
    slug: str = Field(default_factory=lambda data: f"{data['name']}-{data['id'][:8]}")


class Yearly(Model, endpoint="yearlies"):
    name: str
    year: int = Field(default_factory=lambda data: data["created_at"].year)


def _tag(value: str, info: ValidationInfo) -> str:
    return f"{value}@{info.data.get('version')}"


class Tagged(Model, endpoint="taggeds"):
    name: Annotated[str, AfterValidator(_tag)]


class Ref(Model, endpoint="refs"):
    name: str
    ref: str = Field(default="none", validation_alias=AliasChoices("ref", "id"))


def by_values(cls: type[Model], rows: list[dict], ids: list[str]) -> list[Model]:
    """What a create gives each row: the row, its id and the framework values, validated."""
    values = [{**r, "id": i, **FRAMEWORK, "port_flow": []} for r, i in zip(rows, ids, strict=True)]
    return validate_many(cls, values)


def same(got: list[Model], expected: list[Model]) -> None:
    assert [type(m) for m in got] == [type(m) for m in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.__dict__ == b.__dict__ and list(a.__dict__) == list(b.__dict__)
        assert {k: type(v) for k, v in a.__dict__.items()} == {
            k: type(v) for k, v in b.__dict__.items()
        }
        assert a.model_fields_set == b.model_fields_set
        assert a.model_dump_json() == b.model_dump_json()


@pytest.mark.parametrize(
    ("cls", "after"),
    [(Plain, True), (Loose, True), (Checked, False), (Shouting, False),
     (SeesFramework, False), (Posted, False), (Slugged, False), (Yearly, False),
     (Tagged, False), (Ref, False)],
)  # fmt: skip
def test_fresh_instances_are_what_validating_each_row_gives(cls: type[Model], after: bool) -> None:
    assert framework_set_after(cls) is after
    rows: list[dict[str, Any]] = [{"name": f" n{i} "} for i in range(5)]
    if cls is Plain:
        rows = [{"name": "a", "tags": ["x"]}, {"name": "b", "qty": 2}, {"name": "c", "note": None}]
    ids = new_ids(len(rows))
    got, known = validate_fresh(cls, rows, ids, FRAMEWORK)
    same(got, by_values(cls, rows, ids))
    # Each instance owns its port_flow list: none is shared, not even with FRAMEWORK.
    assert len({id(m.port_flow) for m in got} | {id(FRAMEWORK["port_flow"])}) == len(got) + 1
    if after:
        assert known["id"] == ids and list(known["created_at"]) == [NOW] * len(rows)
        assert "port_flow" not in known
    else:
        assert known == {}


def test_the_framework_values_set_after_are_those_of_every_kind_of_row() -> None:
    # Rows of several shapes (defaults taken or given) keep their own fields set.
    rows = [{"name": "a"}, {"name": "b", "qty": 1, "tags": []}, {"name": "c", "note": "x"}]
    ids = new_ids(3)
    got, _ = validate_fresh(Plain, rows, ids, FRAMEWORK)
    same(got, by_values(Plain, rows, ids))
    assert got[0].model_fields_set == {"name", "id", *FRAMEWORK}
    assert got[0].created_at is NOW and got[0].revision == 1 and got[0].compensation is None


def test_only_frozen_instances_share_their_fields_set() -> None:
    # Assigning a field of a model that is not frozen adds to the instance's own set.
    rows = [{"name": "a"}, {"name": "b"}]
    a, b = validate_fresh(Loose, rows, new_ids(2), FRAMEWORK)[0]
    share_fields_sets([a, b])
    assert a.__pydantic_fields_set__ is not b.__pydantic_fields_set__
    c, d = validate_fresh(Plain, rows, new_ids(2), FRAMEWORK)[0]
    share_fields_sets([c, d])
    assert c.__pydantic_fields_set__ is d.__pydantic_fields_set__  # frozen: shared
