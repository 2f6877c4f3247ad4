"""Schemathesis fuzz of the API with JWT auth on: a valid token, then none at all.

The host verifies JWTs against a JWKS served by the test, with per-model scopes on.
With a valid token (every role the scopes and the command ACL name), no answer may be
a 5xx and every answer must conform to the document (which then documents 401 and
403). Without a token, every operation but ``/health``, ``/openapi.json`` and the
docs must answer 401, whatever the input.
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

from tests.http_support import Served, fuzz_settings, serve_host
from tests.integration.test_openapi_fuzz import CHECKS
from tests.jwt_support import AUDIENCE, ISSUER, SigningKey, jwks_server

pytestmark = pytest.mark.slow

KEY = SigningKey.rsa("fuzz")
OPEN = ("/health", "/openapi.json", "/docs")


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Served]:
    with jwks_server(KEY) as jwks:
        s = serve_host(
            tmp_path,
            broken=False,
            jwt_jwks_url=jwks.url,
            jwt_audience=AUDIENCE,
            jwt_issuer=ISSUER,
            auth_scopes="read:*=viewer,write:*=clerk,sql=analyst",
        )
        yield s
        s.host.close()


def fuzz(
    served: Served,
    headers: dict[str, str],
    max_examples: int,
    check: Any = None,
    statuses: list[tuple[str, int]] | None = None,
) -> tuple[int, list[str]]:
    """Every operation of the live document with ``headers``; (requests, failures)."""
    api_schema = schemathesis.openapi.from_url(f"{served.api}/openapi.json", headers=headers)
    sent = [0]
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # a stream that does not end
        if operation.path.split("/microlib/api", 1)[-1].startswith("/deploy"):
            continue  # the deploy token's routes: fuzzed without auth in test_openapi_fuzz
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(served, headers, operation, mode, max_examples, check, statuses, sent)
            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE
            except (Exception, BaseExceptionGroup) as exc:  # all failures are reported
                failures.append(f"{operation.label} ({mode.value}): {exc}"[:2000])
    return sent[0], failures


def _runner(
    served: Served,
    headers: dict[str, str],
    operation: Any,
    mode: Any,
    max_examples: int,
    check: Any,
    statuses: list[tuple[str, int]] | None,
    sent: list[int],
) -> Any:
    @fuzz_settings(max_examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        sent[0] += 1
        if check is not None:
            check(operation.path, case.call(base_url=served.url, headers=headers))
            return
        response = case.call_and_validate(base_url=served.url, headers=headers, checks=CHECKS)
        if statuses is not None:
            statuses.append((mode.value, response.status_code))

    return run


def test_authenticated_api_never_answers_5xx_and_conforms(secured: Served) -> None:
    token = KEY.token(["viewer", "clerk", "analyst", "read"])
    statuses: list[tuple[str, int]] = []
    sent, failures = fuzz(secured, {"Authorization": f"Bearer {token}"}, 20, statuses=statuses)
    assert sent > 300
    assert not failures, "\n\n".join(failures)
    # The token got in. (Negative cases also drop the Authorization header on purpose:
    # those answer 401.)
    positive = [code for mode, code in statuses if mode == "positive"]
    assert 401 not in positive and sum(200 <= code < 300 for code in positive) > 50


def test_without_a_token_every_guarded_operation_is_401(secured: Served) -> None:
    def only_401(path: str, response: Any) -> None:
        if not path.endswith(OPEN):
            assert response.status_code == 401, (path, response.status_code, response.text)

    sent, failures = fuzz(secured, {}, 5, check=only_401)
    assert sent > 50
    assert not failures, "\n\n".join(failures)
