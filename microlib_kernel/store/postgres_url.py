"""``postgresql://`` URLs: what libpq reads, and the options microlib reads itself."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: URL query parameters microlib reads itself (libpq would refuse them).
OWN_PARAMS = ("sql_timeout", "pool_size", "acquire_timeout")


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``(conninfo, options)``: the URL libpq connects with (``postgresql://``, without
    microlib's parameters), and microlib's own parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in OWN_PARAMS}
    rest = urlencode([(k, v) for k, v in query if k not in OWN_PARAMS])
    return urlunsplit(("postgresql", parts.netloc, parts.path, rest, parts.fragment)), own
