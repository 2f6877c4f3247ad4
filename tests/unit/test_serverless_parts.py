"""Pieces of the Lambda support that need no host: cell parsing, paths, error formats."""

from __future__ import annotations

import json

import pytest

from microlib_kernel.errors import DeployRefused
from microlib_kernel.serverless.adapter import (
    _deadline,
    _external_prefix,
    _strip_stage,
    error_response,
)
from microlib_kernel.serverless.settings import (
    LAMBDA_DATASOURCE,
    LAMBDA_HOME,
    base_path,
    lambda_settings,
)
from microlib_kernel.serverless.sources import Source, parse_cell

# -- %%microlib cells ------------------------------------------------------------------------


def test_model_cells() -> None:
    got = parse_cell("%%microlib model\nclass A: pass\n", "nb cell 1", 1)
    assert got == Source("model", None, None, "class A: pass\n", "nb cell 1", 1)
    pinned = parse_cell("\n\n%%microlib model --version 1.2.0\nx = 1", "c")
    assert pinned is not None and pinned.version == "1.2.0" and pinned.text == "x = 1"
    assert parse_cell("%%microlib model --version=2.0.1\n", "c").version == "2.0.1"  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["adapter", "service", "module"])
def test_named_cells(kind: str) -> None:
    got = parse_cell(f"%%microlib {kind} payments\r\ndef f(): pass\r\n", "c")
    assert got is not None
    assert (got.kind, got.name, got.text) == (kind, "payments", "def f(): pass\r\n")


@pytest.mark.parametrize(
    "text",
    [
        "print(1)",
        "%load_ext microlib_kernel",
        "%microlib status",
        "%%microlib sql\nSELECT 1",
        "%%microlib sql -o x\nSELECT 1",
        "%%microlibrary model\nx = 1",
        "# %%microlib model\nx = 1",
        "",
    ],
)
def test_cells_that_deploy_nothing(text: str) -> None:
    assert parse_cell(text, "c") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("%%microlib modle\nx = 1", "not a deployable cell"),
        ("%%microlib\nx = 1", "not a deployable cell"),
        ("%%microlib adapter\ndef f(): pass", "needs one NAME"),
        ("%%microlib adapter not-an-id\ndef f(): pass", "needs one NAME"),
        ("%%microlib service a b\nx", "needs one NAME"),
        ("%%microlib model --version one\nx", "must look like 1.2.0"),
        ("%%microlib model --verbose\nx", "unexpected '--verbose'"),
        ("%%microlib model 'unclosed\nx", "cannot parse"),
    ],
)
def test_malformed_cells_name_the_cell(text: str, message: str) -> None:
    with pytest.raises(DeployRefused) as info:
        parse_cell(text, "shop.ipynb cell 7")
    assert info.value.message.startswith("shop.ipynb cell 7: ")
    assert message in info.value.message


def test_file_names() -> None:
    assert Source("model", None, None, "", "o").file_name(3) == "03_model.py"
    assert Source("adapter", "pay", None, "", "o").file_name(12, 3) == "012_adapter_pay.py"


# -- paths ------------------------------------------------------------------------------------


def _v2(raw_path: str, stage: str) -> dict:
    return {"version": "2.0", "rawPath": raw_path, "requestContext": {"stage": stage}}


def test_http_api_stage_is_stripped_only_when_named() -> None:
    assert _strip_stage(_v2("/prod/api/x", "prod"), "/prod/api/x") == "/api/x"
    assert _strip_stage(_v2("/prod", "prod"), "/prod") == "/"
    assert _strip_stage(_v2("/production/x", "prod"), "/production/x") == "/production/x"
    assert _strip_stage(_v2("/api/x", "$default"), "/api/x") == "/api/x"
    rest = {"path": "/api/x", "requestContext": {"stage": "prod", "path": "/prod/api/x"}}
    assert _strip_stage(rest, "/api/x") == "/api/x"  # REST paths carry no stage


def test_external_prefix() -> None:
    rest = {"path": "/api/x", "requestContext": {"stage": "prod", "path": "/prod/api/x"}}
    assert _external_prefix(rest, "/api/x") == "/prod"
    assert _external_prefix(_v2("/prod/api/x", "prod"), "/api/x") == "/prod"
    assert _external_prefix(_v2("/api/x", "$default"), "/api/x") == ""
    assert _external_prefix(_v2("/prod/", "prod"), "/") == "/prod"
    assert _external_prefix(_v2("/a%20b/api", "x"), "/api") == "/a b"
    alb = {"path": "/api/x", "requestContext": {"elb": {}}}
    assert _external_prefix(alb, "/api/x") == ""
    console = {"path": "/api/x", "requestContext": {"path": "/{proxy+}"}}
    assert _external_prefix(console, "/api/x") == ""


def test_base_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert base_path("shop") == base_path("/shop/") == "/shop"
    assert base_path("") == base_path("/") == "/"
    monkeypatch.setenv("MICROLIB_LAMBDA_BASE_PATH", "v2/")
    assert base_path(None) == "/v2"
    assert base_path("x") == "/x"


# -- errors and time --------------------------------------------------------------------------


def test_error_responses_follow_the_event_format() -> None:
    body = {"error": "bad"}
    plain = error_response({"version": "2.0", "requestContext": {}}, 400, body)
    assert plain == {
        "statusCode": 400,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }
    rest = error_response({"multiValueHeaders": {}, "requestContext": {}}, 404, body)
    assert rest["headers"] and rest["multiValueHeaders"] == {"content-type": ["application/json"]}
    alb = error_response({"requestContext": {"elb": {}}, "headers": {}}, 504, body)
    assert alb["statusDescription"] == "504 Gateway Timeout" and "headers" in alb
    alb_multi = error_response({"requestContext": {"elb": {}}, "multiValueHeaders": {}}, 400, body)
    assert "headers" not in alb_multi and alb_multi["multiValueHeaders"]
    assert error_response(None, 400, body)["statusCode"] == 400


def test_deadline_from_the_context() -> None:
    class Context:
        def __init__(self, ms: object) -> None:
            self.ms = ms

        def get_remaining_time_in_millis(self) -> object:
            return self.ms

    assert _deadline(None) == 29.0
    assert _deadline(Context(10_000)) == pytest.approx(9.5)
    assert _deadline(Context(100)) == 0.5
    assert _deadline(Context("soon")) == 29.0


# -- settings ---------------------------------------------------------------------------------


def test_lambda_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = lambda_settings(None)
    assert settings.datasource == LAMBDA_DATASOURCE == "duckdb:////tmp/microlib.duckdb"
    assert settings.home == LAMBDA_HOME
    assert settings.deploy_token and len(settings.deploy_token) >= 32
    assert lambda_settings(None).deploy_token != settings.deploy_token
    assert lambda_settings("memory://").datasource == "memory://"


def test_environment_wins_over_lambda_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROLIB_DATASOURCE", "memory://")
    monkeypatch.setenv("MICROLIB_HOME", "/tmp/elsewhere")
    monkeypatch.setenv("MICROLIB_DEPLOY_TOKEN", "t0k3n")
    monkeypatch.setenv("MICROLIB_API_ROOT", "/api")
    settings = lambda_settings(None)
    assert (settings.datasource, settings.home, settings.deploy_token, settings.api_root) == (
        "memory://",
        "/tmp/elsewhere",
        "t0k3n",
        "/api",
    )
    assert lambda_settings("file:///data").datasource == "file:///data"
