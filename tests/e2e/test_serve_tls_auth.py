"""End to end: `microlib serve` over HTTPS with JWT auth on; `microlib deploy --cafile`.

Real subprocesses on loopback with a trustme CA; every wait is bounded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import trustme

from microlib_kernel.client import HostClient
from microlib_kernel.errors import Forbidden, Unauthorized
from tests.e2e.test_serve_deploy import microlib
from tests.integration.test_tls import tls_files
from tests.jwt_support import SigningKey
from tests.serve_support import ORDERS, start_serve, stop

pytestmark = pytest.mark.slow


def test_https_jwt_serve_and_deploy_with_cafile(tmp_path: Path) -> None:
    shutil.copy(ORDERS, tmp_path / "orders_service.ipynb")
    certfile, keyfile, cafile = tls_files(trustme.CA(), tmp_path)
    key = SigningKey.rsa("ops")
    (tmp_path / "issuer.pem").write_bytes(key.public_pem())
    served = start_serve(
        tmp_path,
        "orders_service.ipynb",
        "--certfile", certfile, "--keyfile", keyfile, "--cafile", cafile,
        "--jwt-key", "issuer.pem", "--auth-scopes", "write:*=clerk",
        env={"MICROLIB_CAFILE": ""}, scheme="https",
    )  # fmt: skip
    proc, url = served.proc, served.url
    try:
        # API calls need a JWT; its roles meet the scopes.
        with HostClient(url, key.token(["viewer"], aud=None, iss=None), verify=cafile) as c:
            assert [m["name"] for m in c.models()] == ["Customer", "Order"] or c.models()
            with pytest.raises(Forbidden):
                c.create("orders", {"customer_id": "c1", "items": [{"price": 10, "qty": 1}]})
        with HostClient(url, "not-a-jwt", verify=cafile) as c, pytest.raises(Unauthorized):
            c.models()
        clerk = key.token(["clerk"], aud=None, iss=None)
        with HostClient(url, clerk, verify=cafile) as c:
            order = c.create("orders", {"customer_id": "c1", "items": [{"price": 10, "qty": 1}]})
            assert order["total"] == 12.0
        # A deploy that trusts the CA goes through; one that does not fails clearly.
        ok = microlib(
            tmp_path, "deploy", "orders_service.ipynb", "--to", url, "--cafile", cafile,
            "--no-progress",
        )  # fmt: skip
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "Order 1.0.1" in ok.stdout
        env_less = microlib(
            tmp_path, "deploy", "orders_service.ipynb", "--to", url, "--no-progress"
        )
        assert env_less.returncode != 0
        assert "TLS certificate of https://127.0.0.1" in env_less.stderr
        assert "not trusted" in env_less.stderr and "--cafile" in env_less.stderr
        # Plain HTTP to the TLS port does not get an answer from the API.
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/microlib/api/health", timeout=5)
    finally:
        stop(proc)
