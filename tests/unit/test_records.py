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
from microlib_kernel.store.base import FreshInserts, Repeated, WriteOp, records_of_columns


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


def _same_as_pydantic(cls: type[Model], data: list[dict[str, Any]]) -> None:
    instances = list_adapter(cls).validate_python(data)
    expected = dumped(cls, instances)
    got = dump_records(cls, instances)
    assert got == expected
    assert [[type(v) for v in r.values()] for r in got] == [
        [type(v) for v in r.values()] for r in expected
    ]


def test_a_config_that_changes_the_dump_takes_the_full_dump() -> None:
    # ser_json_timedelta, json_encoders, ser_json_bytes...: the column adapters would
    # not know them (the review found timedeltas as 'PT3.5S' where pydantic gives 3.5).
    class Timed(Model, endpoint="timeds", ser_json_timedelta="float"):  # type: ignore[call-arg]
        took: dt.timedelta = dt.timedelta(0)
        blob: bytes = b""

    _same_as_pydantic(Timed, [{**BASE, "id": f"{i:032x}", "took": i + 0.5} for i in range(3)])
    assert records._plans[Timed] is None


def test_a_type_pydantic_adapts_only_inside_its_model_takes_the_full_dump() -> None:
    class Tag(str):
        pass

    class Tagged(Model, endpoint="taggeds", arbitrary_types_allowed=True):  # type: ignore[call-arg]
        tag: Tag | None = None

    _same_as_pydantic(Tagged, [{**BASE, "id": f"{i:032x}"} for i in range(3)])
    assert records._plans[Tagged] is None


def test_empty_lists_with_a_serializer_inside_are_dumped_by_it() -> None:
    class Counted(Model, endpoint="counteds"):
        counts: Annotated[list[int], PlainSerializer(lambda v: len(v))] | None = None

    _same_as_pydantic(Counted, [{**BASE, "id": f"{i:032x}", "counts": []} for i in range(3)])


def test_root_validators_and_post_init_count_as_validators() -> None:
    class Posted(Model, endpoint="posteds"):
        qty: int = 0

        def model_post_init(self, context: Any, /) -> None:
            object.__setattr__(self, "qty", decimal.Decimal(7))

    with pytest.warns(UserWarning):  # pydantic's own dump warns about the Decimal
        _same_as_pydantic(Posted, [{**BASE, "id": f"{i:032x}"} for i in range(3)])


def test_values_beyond_the_fields_in_an_instance_dict_are_not_records() -> None:
    from functools import cached_property

    class Cached(Model, endpoint="cacheds"):
        name: str = ""

        @cached_property
        def shout(self) -> str:
            return self.name.upper()

        def model_post_init(self, context: Any, /) -> None:
            self.shout  # noqa: B018 (fills the cached property)

    _same_as_pydantic(Cached, [{**BASE, "id": f"{i:032x}", "name": "x"} for i in range(3)])


def test_columns_are_the_records_by_field() -> None:
    instances = list_adapter(Every).validate_python(rows(12))
    columns = records.dump_columns(Every, instances)
    assert columns is not None and list(columns) == list(Every.model_fields)
    assert records_of_columns(columns) == dumped(Every, instances)
    # One instant in every row: one text, repeated.
    created = columns["created_at"]
    assert isinstance(created, Repeated) and created.value == "2026-12-07T14:00:00.123456Z"
    fresh = FreshInserts.of_columns("everys", columns)
    assert fresh.ids == [i.id for i in instances] and len(fresh) == 12
    assert fresh[3] == WriteOp("upsert", "everys", instances[3].id, dumped(Every, instances)[3], 0)
    assert fresh.records is fresh.records  # made once, on first use
    with pytest.raises(ValueError, match="one length"):
        FreshInserts.of_columns("everys", {"id": ["a", "b"], "name": ["x"]})


def test_a_repeated_value_is_that_value_at_every_index() -> None:
    column = Repeated("x", 3)
    assert list(column) == ["x", "x", "x"] == column[:] and column[-1] == "x"
    assert column[1:] == ["x", "x"] and len(column) == 3 and column.count("x") == 3
    with pytest.raises(IndexError):
        column[3]
    with pytest.raises(TypeError, match="immutable"):
        Repeated([], 2)  # each row owns its lists
