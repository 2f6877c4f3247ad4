"""``%microlib load``: bulk-create instances from a notebook variable, with progress.

Rows are written in batches through the model's runtime, so each batch is validated
as a whole (all its rows or none), committed in one group, and emits its
``created`` events like any other create.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from IPython.core.error import UsageError

from ..errors import MicrolibError
from .displays import Progress


def rows_of(value: Any) -> list[dict[str, Any]]:
    """Rows as dicts from a list of mappings, a pandas ``DataFrame`` or a ``SqlResult``.

    Raises:
        UsageError: anything else.
    """
    if hasattr(value, "to_dicts"):  # SqlResult
        return list(value.to_dicts())
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return list(value.to_dict("records"))
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        rows = list(value)
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, Mapping)), None)
        if bad is None:
            return [dict(r) for r in rows]
        raise UsageError(f"row {bad} is not a dict ({type(rows[bad]).__name__})")
    raise UsageError(
        f"cannot load a {type(value).__name__}: give a list of dicts, a DataFrame or a SqlResult"
    )


def bulk_load(host: Any, model: str, rows: list[dict[str, Any]], batch: int) -> tuple[str, int]:
    """Create ``rows`` as instances of ``model`` (its active version), ``batch`` at a time.

    Returns:
        The model's name and how many instances were created.

    Raises:
        MicrolibError: a batch was refused; the message says how many rows were loaded
            before it (earlier batches stay committed).
    """
    cls = host.model(model)
    loaded = 0
    with Progress(len(rows), f"loading {cls.__name__}") as progress:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            try:
                host.loop.run(cls.create_many(chunk))
            except MicrolibError as exc:
                raise MicrolibError(
                    f"rows {start}-{start + len(chunk) - 1} refused ({exc.message}); "
                    f"{loaded} row(s) loaded before them"
                ) from None
            loaded += len(chunk)
            progress.update(len(chunk))
    return cls.__name__, loaded
