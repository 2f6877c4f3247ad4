"""Property-based fuzzing of the generated OpenAPI with schemathesis, over real HTTP.

A host with three models (Order with a command and validators, Customer with a nested
type, Counter with a hook) serves on 127.0.0.1; schemathesis generates requests for
every documented operation from ``/openapi.json`` and checks that no answer is a 5xx
and that every answer conforms to the document (status, content type, headers, body
schema). ``/events`` is left out: it is a stream that does not end. The deploy routes
are fuzzed *without* the deploy token (they execute code): every answer must be a
documented 401, and nothing may have been deployed. Bounded for CI by ``max_examples``;
a longer run is described in the README.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.http_support import Served, fuzz_settings, serve_host

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[Served]:
    s = serve_host(tmp_path, broken=False)
    yield s
    s.host.close()


def fuzz(served: Served, max_examples: int, modes: tuple[Any, ...]) -> tuple[int, list[str]]:
    """Run every operation of the live document; returns (requests sent, failures)."""
    api_schema = schemathesis.openapi.from_url(f"{served.api}/openapi.json")
    sent = 0
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue
        for mode in modes:

            @fuzz_settings(max_examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal sent
                sent += 1
                case.call_and_validate(base_url=served.url, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no input)
            except (Exception, BaseExceptionGroup) as exc:  # all failures are reported
                failures.append(f"{operation.label} ({mode.value}): {exc}"[:2000])
    return sent, failures


def test_every_documented_operation(fuzzed: Served) -> None:
    sent, failures = fuzz(fuzzed, 20, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
    assert sent > 500
    assert not failures, "\n\n".join(failures)
    log = fuzzed.host.loop.run(_deployments(fuzzed))
    assert [who for who in log if who != "python"] == []  # no fuzzed deploy got through


async def _deployments(served: Served) -> list[str]:
    return [d.who for d in served.host.deployments]
