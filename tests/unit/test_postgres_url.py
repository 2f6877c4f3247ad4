"""microlib's own URL options never reach libpq (which refuses unknown parameters)."""

from __future__ import annotations

from microlib_kernel.store.postgres_url import split_url


def test_own_options_are_split_from_what_libpq_reads() -> None:
    conninfo, own = split_url(
        "postgres://app:pw@db:5433/shop?sslmode=require&sql_timeout=5&acquire_timeout=2"
    )
    assert conninfo == "postgresql://app:pw@db:5433/shop?sslmode=require"
    assert own == {"sql_timeout": "5", "acquire_timeout": "2"}


def test_a_plain_url_is_unchanged() -> None:
    assert split_url("postgresql://postgres@127.0.0.1:5432/test") == (
        "postgresql://postgres@127.0.0.1:5432/test",
        {},
    )
