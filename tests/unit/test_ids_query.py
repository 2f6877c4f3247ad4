"""Ids and list queries: checked before anything reaches a store."""

from __future__ import annotations

import pytest

from microlib_kernel import BadQuery, ValidationFailed
from microlib_kernel.domain.ids import check_id, is_valid_id, new_id, new_ids
from microlib_kernel.domain.query import DEFAULT_ORDER, build_query
from tests.models import make_models


def test_new_ids_are_unique_and_valid() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(is_valid_id(i) and len(i) == 32 for i in ids)


def test_ids_made_in_bulk_look_like_single_ids() -> None:
    before = new_id()
    ids = new_ids(5_000)
    after = new_id()
    assert len(set(ids)) == 5_000
    assert all(is_valid_id(i) and len(i) == 32 for i in ids)
    # One millisecond for the whole call, between the single ids made around it.
    assert len({i[:12] for i in ids}) == 1
    assert before[:12] <= ids[0][:12] <= after[:12]
    assert new_ids(0) == [] and len(new_ids(1)) == 1


def test_ids_made_in_bulk_follow_one_another_in_order() -> None:
    ids = new_ids(1_000)
    assert ids == sorted(ids)
    numbers = [int(i, 16) for i in ids]
    assert numbers == list(range(numbers[0], numbers[0] + 1_000))
    # Two calls draw their own first id: their runs do not meet.
    other = new_ids(1_000)
    assert not set(ids) & set(other)


@pytest.mark.parametrize(
    "bad", ["", "a/b", "..", "a..b", "../etc", ".hidden", "x" * 201, "a b", 5, None]
)
def test_unsafe_ids_are_refused(bad: object) -> None:
    assert not is_valid_id(bad)
    with pytest.raises(ValidationFailed, match="invalid id"):
        check_id(bad)


def test_filters_are_parsed_with_the_field_type() -> None:
    Order, _ = make_models()
    q = build_query(
        Order, {"total": "10", "status": "PENDING"}, limit="5", offset="2", order="-total"
    )
    assert q.filters == {"total": 10.0, "status": "PENDING"}
    assert q.limit == 5 and q.offset == 2
    assert q.order[0] == ("total", True)
    assert build_query(Order, {}).order == DEFAULT_ORDER


@pytest.mark.parametrize(
    ("filters", "kwargs", "message"),
    [
        ({"colour": "red"}, {}, "unknown filter field"),
        ({"items": "x"}, {}, "only scalar fields"),
        ({"total": "abc"}, {}, "filter total"),
        ({"status": "LOST"}, {}, "filter status"),
        ({}, {"limit": -1}, "limit"),
        ({}, {"offset": "x"}, "offset"),
        ({}, {"order": "colour"}, "cannot order by"),
    ],
)
def test_bad_queries_are_refused(filters: dict, kwargs: dict, message: str) -> None:
    Order, _ = make_models()
    with pytest.raises(BadQuery, match=message):
        build_query(Order, filters, **kwargs)
