"""``dump_records`` gives exactly what pydantic's dump of the list gives, for any model."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Annotated, Any, Literal

import pytest
from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    computed_field,
    field_serializer,
    field_validator,
)

from microlib_kernel import Model
from microlib_kernel.host import records
from microlib_kernel.host.bulk import list_adapter
from microlib_kernel.host.records import dump_records


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    since: dt.date | None = None


NOW = dt.datetime(2026, 12, 7, 14, 0, 0, 123456, tzinfo=dt.UTC)
BASE = {"created_at": NOW, "updated_at": NOW, "version": "1.0.0", "revision": 1}


def rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            **BASE,
            "id": f"{i:032x}",
            "name": f"n{i}",
            "qty": i,
            "ratio": float("inf") if i == 3 else i / 3,
            "flag": i % 2 == 0,
            "kind": "a" if i % 2 else "b",
            "when": dt.datetime(2026, 1, 1, i % 24, tzinfo=dt.timezone(dt.timedelta(hours=i % 3))),
            "day": dt.date(2026, 1, 1 + i % 28),
            "amount": decimal.Decimal(f"{i}.5"),
            "ref": uuid.UUID(int=i),
            "tags": [f"t{j}" for j in range(i % 3)],
            "extra": {"at": NOW, "n": [i, {"deep": None}]},
            "anything": NOW if i % 2 else {"x": decimal.Decimal("1.1")},
            "colour": Colour.RED if i % 2 else "blue",
            "address": {"street": "s", "since": dt.date(2020, 1, 1)} if i % 2 else None,
        }
        for i in range(n)
    ]


class Every(Model, endpoint="everys"):
    name: str
    qty: int = 0
    ratio: float = 0.0
    flag: bool | None = None
    kind: Literal["a", "b"] = "a"
    when: dt.datetime | None = None
    day: dt.date | None = None
    amount: decimal.Decimal = decimal.Decimal("0")
    ref: uuid.UUID | None = None
    tags: list[str] = Field(default_factory=list, max_length=5)
    extra: dict[str, Any] = Field(default_factory=dict)
    anything: Any = None
    colour: Colour = Colour.BLUE
    address: Address | None = None


def dumped(cls: type[Model], instances: list[Model]) -> list[dict[str, Any]]:
    return list_adapter(cls).dump_python(instances, mode="json")


def test_records_of_plain_fields_are_pydantics_dump() -> None:
    instances = list_adapter(Every).validate_python(rows(40))
    got = dump_records(Every, instances)
    assert got == dumped(Every, instances)
    # The records are new containers: a stored record never aliases an instance's list.
    assert got[1]["tags"] is not instances[1].tags and got[1]["extra"] is not instances[1].extra
    assert records._plans[Every] is not None  # taken column by column
    assert dump_records(Every, []) == []


def test_one_timestamp_object_in_every_row_is_dumped_once() -> None:
    instances = list_adapter(Every).validate_python(rows(10))
    got = dump_records(Every, instances)
    assert {r["created_at"] for r in got} == {"2026-12-07T14:00:00.123456Z"}
    other = dt.datetime(2026, 12, 7, 15, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    mixed = rows(3)
    mixed[1]["created_at"] = other  # the same instant, another offset: its own text
    instances = list_adapter(Every).validate_python(mixed)
    assert dump_records(Every, instances) == dumped(Every, instances)


def test_a_validator_returning_another_type_takes_the_full_dump() -> None:
    class Loose(Model, endpoint="looses"):
        name: str
        qty: int = 0

        @field_validator("name", mode="after")
        @classmethod
        def stamp(cls, value: str) -> Any:
            return dt.date(2026, 1, 1) if value == "date" else value

    data = [{**BASE, "id": f"{i:032x}", "name": n} for i, n in enumerate(["x", "date"])]
    instances = list_adapter(Loose).validate_python(data)
    with pytest.warns(UserWarning):  # pydantic's own dump warns about the date
        expected = dumped(Loose, instances)
    with pytest.warns(UserWarning):
        assert dump_records(Loose, instances) == expected
    assert records._plans[Loose] is not None  # checked, and found another type


@pytest.mark.parametrize("shape", ["field_serializer", "computed", "annotated", "extra", "alias"])
def test_models_with_their_own_serialization_take_the_full_dump(shape: str) -> None:
    if shape == "field_serializer":

        class Own(Model, endpoint="owns"):
            name: str

            @field_serializer("name")
            def shout(self, value: str) -> str:
                return value.upper()

    elif shape == "computed":

        class Own(Model, endpoint="owns"):  # type: ignore[no-redef]
            name: str

            @computed_field  # type: ignore[prop-decorator]
            @property
            def size(self) -> int:
                return len(self.name)

    elif shape == "annotated":

        class Own(Model, endpoint="owns"):  # type: ignore[no-redef]
            name: Annotated[str, PlainSerializer(lambda v: v.upper())]

    elif shape == "extra":

        class Own(Model, endpoint="owns", extra="allow"):  # type: ignore[no-redef,call-arg]
            name: str

    else:

        class Own(Model, endpoint="owns"):  # type: ignore[no-redef]
            name: str = Field(serialization_alias="Name")

    data = [{**BASE, "id": f"{i:032x}", "name": f"n{i}"} for i in range(3)]
    if shape == "extra":
        data[0]["more"] = 1
    instances = list_adapter(Own).validate_python(data)
    assert dump_records(Own, instances) == dumped(Own, instances)
    assert records._plans[Own] is None


def test_empty_lists_in_every_row_are_new_lists_each() -> None:
    data = [{**BASE, "id": f"{i:032x}", "name": f"n{i}", "tags": []} for i in range(5)]
    instances = list_adapter(Every).validate_python(data)
    got = dump_records(Every, instances)
    assert got == dumped(Every, instances)
    assert len({id(r["tags"]) for r in got} | {id(i.tags) for i in instances}) == 10
