"""TLS: the host serves HTTPS with a certificate made by trustme; clients verify it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from microlib_kernel.client import HostClient
from microlib_kernel.errors import MicrolibError, ServiceUnavailable
from microlib_kernel.notebook.remote import RemoteTarget
from tests.http_support import ITEMS, Served, serve_host
from tests.jwt_support import SigningKey


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_files(ca: trustme.CA, folder: Path) -> tuple[str, str, str]:
    """(certfile, keyfile, CA file) for a certificate of 127.0.0.1 and localhost."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


@pytest.fixture
def https(tmp_path: Path, ca: trustme.CA) -> Iterator[tuple[Served, str]]:
    certfile, keyfile, cafile = tls_files(ca, tmp_path)
    s = serve_host(tmp_path, certfile=certfile, keyfile=keyfile)
    yield s, cafile
    s.host.close()


def test_the_host_serves_https_and_host_client_verifies_it(https: tuple[Served, str]) -> None:
    served, cafile = https
    assert served.url.startswith("https://127.0.0.1:")
    with HostClient(served.url, verify=cafile) as client:
        assert client.health()["status"] == "ok"
        order = client.create("orders", {"items": ITEMS})
        assert client.get("orders", order["id"])["id"] == order["id"]
        assert client.sql("SELECT count(*) FROM orders").rows == [(1,)]


def test_a_client_that_does_not_trust_the_ca_fails_clearly(
    https: tuple[Served, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, _ = https
    monkeypatch.delenv("MICROLIB_CAFILE", raising=False)
    with HostClient(served.url) as client, pytest.raises(ServiceUnavailable) as info:
        client.health()
    assert "TLS certificate" in str(info.value) and "not trusted" in str(info.value)
    other = trustme.CA()
    stranger = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(stranger))
    with HostClient(served.url, verify=str(stranger)) as client, pytest.raises(ServiceUnavailable):
        client.health()


def test_cafile_from_the_environment(
    https: tuple[Served, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, cafile = https
    monkeypatch.setenv("MICROLIB_CAFILE", cafile)
    with HostClient(served.url) as client:
        assert client.health()["status"] == "ok"


def test_tls_needs_both_files_and_says_which_is_wrong(tmp_path: Path, ca: trustme.CA) -> None:
    certfile, _, _ = tls_files(ca, tmp_path)
    with pytest.raises(MicrolibError, match="both certfile and keyfile"):
        serve_host(tmp_path, certfile=certfile)
    with pytest.raises(MicrolibError, match="does not exist"):
        serve_host(tmp_path, certfile=certfile, keyfile=str(tmp_path / "nope.pem"))
    with pytest.raises(MicrolibError, match="do not load"):
        serve_host(tmp_path, certfile=certfile, keyfile=certfile)


def test_connect_carries_the_api_token_over_tls_with_jwt_auth(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """``%microlib connect`` (RemoteTarget) to an https host with JWT auth on."""
    certfile, keyfile, cafile = tls_files(ca, tmp_path)
    key = SigningKey.rsa("k")
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(key.public_pem())
    s = serve_host(
        tmp_path, certfile=certfile, keyfile=keyfile, jwt_key=str(pem), auth_scopes="sql=analyst"
    )
    try:
        deploy_token = s.host.deploy_token
        # The deploy token alone: it is accepted on the API routes (all roles).
        target = RemoteTarget.connect(s.url, deploy_token, env={}, cafile=cafile)
        try:
            assert "Order" in [m["name"] for m in target.models()]
            assert target.sql("SELECT count(*) AS n FROM orders", None).rows == [(0,)]
        finally:
            target.close()
        # A separate API token (a JWT) is used for the API routes.
        jwt_token = key.token(["viewer"], aud=None, iss=None)
        target = RemoteTarget.connect(
            s.url, deploy_token, env={}, cafile=cafile, api_token=jwt_token
        )
        try:
            assert target.models()
            with pytest.raises(MicrolibError, match="sql needs one of the roles analyst"):
                target.sql("SELECT 1", None)
        finally:
            target.close()
        # Without the CA, connecting fails with a clear error.
        with pytest.raises(MicrolibError, match="not trusted"):
            RemoteTarget.connect(s.url, deploy_token, env={})
    finally:
        s.host.close()
