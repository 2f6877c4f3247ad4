"""``Secret`` fields on a real DuckDB file: encrypted at rest, masked in every output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cryptography.fernet import Fernet
from pydantic import model_validator

from microlib_kernel import (
    BadQuery,
    DeployRefused,
    Forbidden,
    Host,
    MicrolibError,
    Model,
    Secret,
    ValidationFailed,
    command,
)
from microlib_kernel.cli import main as cli
from tests.host_support import HostOptions

pytestmark = pytest.mark.anyio

CARD = "4111-1111-1111-1111"
PIN = 73195824
API_KEY = "sk_live_QWxhZGRpbjpvcGVu"


def make_wallet() -> type[Model]:
    class Wallet(Model, endpoint="wallets"):
        owner: str
        card: Secret[str]
        pin: Secret[int] | None = None
        extra: Secret[dict] | None = None

        @model_validator(mode="before")
        @classmethod
        def refuse(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("owner") == "refuse":
                raise ValueError("refused owner")
            return data

        @command(acl=["billing"])
        def card_number(self) -> dict:
            return {"card": self.card.reveal()}

    return Wallet


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    k = new_key()
    monkeypatch.setenv("MICROLIB_SECRET_KEY", k)
    return k


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "wallets.duckdb"


@pytest.fixture
def host_options(key: str, db: Path) -> HostOptions:
    """A DuckDB file in a subfolder, opened once MICROLIB_SECRET_KEY is set."""
    return HostOptions(f"duckdb:///{db}")


@pytest.fixture
def Wallet(host: Host) -> type[Model]:
    cls = make_wallet()
    host.publish(cls)
    return cls


async def fill(Wallet: type[Model]) -> list[Model]:
    return [
        await Wallet.create(owner="ada", card=CARD, pin=PIN, extra={"api": API_KEY}),
        await Wallet.create(owner="bob", card="5500-0000-0000-0004"),
    ]


def test_publish_is_refused_without_a_usable_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Host("memory://") as h:
        with pytest.raises(DeployRefused, match="microlib secret-key") as info:
            h.publish(make_wallet())
        assert "Wallet has Secret fields card, pin, extra but no MICROLIB_SECRET_KEY" in str(
            info.value
        )
        assert info.value.details["hint"] == "microlib secret-key"
        assert h.registry.find("Wallet") is None

    monkeypatch.setenv("MICROLIB_SECRET_KEY", "this-is-no-fernet-key")
    with Host("memory://") as h:
        with pytest.raises(DeployRefused, match="is not a Fernet key") as info:
            h.publish(make_wallet())
        assert "this-is-no-fernet-key" not in str(info.value)

        class Plain(Model):
            name: str

        h.publish(Plain)  # models without secrets need no key


async def test_python_reads_everything_else_sees_stars(host: Host, Wallet) -> None:
    events: list[Any] = []
    Wallet.on("wallet.*", events.append)
    w, _ = await fill(Wallet)
    assert w.card.reveal() == CARD and w.pin.reveal() == PIN
    assert w.extra.reveal() == {"api": API_KEY}
    assert str(w.card) == "***" and CARD not in repr(w) and CARD not in str(w)
    assert w.to_json()["card"] == "***" and w.to_json()["extra"] == "***"
    found = await Wallet.find(w.id)
    host.cache.clear("wallets")
    from_disk = await Wallet.find(w.id)  # decrypted from the store, not the cache
    assert found.card.reveal() == from_disk.card.reveal() == CARD
    assert from_disk.pin.reveal() == PIN and from_disk == found
    listed = await Wallet.list(owner="ada")
    assert listed[0].extra.reveal() == {"api": API_KEY}
    w2 = await from_disk.update(card="6011-0000-0000-0004")
    assert (await Wallet.find(w.id)).card.reveal() == "6011-0000-0000-0004"
    assert w2.pin.reveal() == PIN  # untouched secrets survive an update
    await w.emit("wallet.used", {"card": w.card, "nested": [w.pin]})  # user data too
    await host.idle()
    assert events[-1].to_dict()["data"] == {"card": "***", "nested": ["***"]}
    dumped = json.dumps([e.to_dict() for e in events])
    for plain in (CARD, "6011-0000-0000-0004", str(PIN), API_KEY):
        assert plain not in dumped
    assert events[-2].data["changes"] == {"card": "***"}
    config = json.dumps(host.config())
    assert CARD not in config and '"const": "***"' in config


async def test_a_command_with_the_right_role_reveals(Wallet) -> None:
    w, _ = await fill(Wallet)
    assert await w.run_command("card_number", roles=["billing"]) == {"card": CARD}
    with pytest.raises(Forbidden):
        await w.run_command("card_number", roles=["read"])


async def test_errors_never_echo_secrets(Wallet) -> None:
    with pytest.raises(ValidationFailed) as info:
        await Wallet.create(owner="x", card=CARD, pin="99x99")
    assert "99x99" not in json.dumps(info.value.to_dict())
    with pytest.raises(ValidationFailed) as info:
        await Wallet.create(owner="refuse", card=CARD)
    assert CARD not in json.dumps(info.value.to_dict()) and CARD not in str(info.value)


async def test_sql_shows_stars_for_every_way_of_selecting_a_secret(host: Host, Wallet) -> None:
    await fill(Wallet)
    one = "WHERE owner = 'ada'"
    assert host.sql(f"SELECT card FROM wallets {one}").rows == [("***",)]
    assert host.sql(f"SELECT card AS x, pin AS y FROM wallets {one}").rows == [("***", "***")]
    star = host.sql(f"SELECT * FROM wallets {one}").to_dicts()[0]
    assert star["card"] == star["pin"] == star["extra"] == "***" and star["owner"] == "ada"
    assert host.sql("SELECT list(card ORDER BY owner) FROM wallets").rows == [(["***", "***"],)]
    for query in (
        f"SELECT to_json(w) FROM wallets w {one}",
        f"SELECT w::VARCHAR FROM wallets w {one}",
        f"SELECT {{'c': card}} FROM wallets {one}",
        f"SELECT substr(card, 1, 20) FROM wallets {one}",
        f"SELECT card || '!' FROM wallets {one}",
        "WITH t AS (SELECT card AS c FROM wallets) SELECT c FROM t UNION ALL SELECT 'x'",
    ):
        text = json.dumps(host.sql(query).to_json())
        assert "mlsec1:" not in text and CARD not in text, query
    # Encryption is randomised: SQL cannot find a secret by value (documented).
    assert host.sql("SELECT count(*) FROM wallets WHERE card = ?", [CARD]).rows == [(0,)]
    with pytest.raises(BadQuery, match="cannot filter on 'card'"):
        await Wallet.list(card=CARD)
    with pytest.raises(BadQuery, match="cannot order by 'card'"):
        await Wallet.list(order="card")


async def test_plaintext_appears_nowhere_on_disk(host: Host, Wallet, db: Path, key: str) -> None:
    w, _ = await fill(Wallet)
    control = b"owner-control-value-7f3k9q"  # plain data: proves the scan sees the rows
    await (await Wallet.find(w.id)).update(owner=control.decode())  # a second write
    secrets = [CARD.encode(), str(PIN).encode(), API_KEY.encode(), b"5500-0000-0000-0004"]

    def scan() -> bytes:
        raw = b""
        for path in db.parent.iterdir():
            data = path.read_bytes()
            for plain in secrets:
                assert plain not in data, f"{plain!r} found in {path.name}"
            raw += data
        return raw

    assert control in scan()  # while the host runs: the WAL holds the recent writes
    assert db.with_name(db.name + ".wal").exists()
    host.close()
    assert control in scan()  # after close: checkpointed into the database file

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT * FROM wallets").fetchall()
        cards = con.execute(
            "SELECT card, pin, extra FROM wallets WHERE owner = ?", [control.decode()]
        ).fetchone()
    finally:
        con.close()
    text = repr(rows)
    assert all(s.decode() not in text for s in secrets)
    assert all(v.startswith("mlsec1:") for v in cards)


async def test_restart_wrong_key_and_tampering(
    host: Host, Wallet, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await fill(Wallet)
    host.close()

    with Host(f"duckdb:///{db}") as again:  # same key: everything reads
        W = make_wallet()
        again.publish(W)
        assert (await W.find(a.id)).card.reveal() == CARD

    # Swap two ciphertexts behind the host's back: they no longer open.
    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE wallets SET card = (SELECT card FROM wallets WHERE id = ?) WHERE id = ?",
        [b.id, a.id],
    )
    con.close()
    with Host(f"duckdb:///{db}") as again:
        W = make_wallet()
        again.publish(W)
        moved = await W.find(a.id)
        assert str(moved.card) == "***" and not moved.card.readable
        with pytest.raises(MicrolibError, match=r"encrypted for wallets\.card of"):
            moved.card.reveal()
        assert moved.pin.reveal() == PIN  # the other fields still open

    monkeypatch.setenv("MICROLIB_SECRET_KEY", new_key())  # the wrong key
    with Host(f"duckdb:///{db}") as again:
        W = make_wallet()
        again.publish(W)
        lost = await W.find(b.id)
        with pytest.raises(MicrolibError, match="no key in MICROLIB_SECRET_KEY opens it"):
            lost.card.reveal()
        assert lost.to_json()["card"] == "***" and len(await W.list()) == 2
        await lost.update(owner="bob2")  # writing it back keeps what is stored


async def test_key_rotation_while_serving(host: Host, Wallet, db: Path, key: str, monkeypatch):
    await fill(Wallet)
    host.close()
    new = new_key()
    monkeypatch.setenv("MICROLIB_SECRET_KEY", f"{new},{key}")
    with Host(f"duckdb:///{db}") as both:
        W = make_wallet()
        both.publish(W)
        fresh = await W.create(owner="cy", card="3700-0000-0000-002")  # sealed with the new key
        report = both.secrets.rotate()
        assert report.rotated == {"wallets": 4} and report.current == {"wallets": 1}
        assert report.ok and both.secrets.rotate().rotated == {}
        assert (await W.find(fresh.id)).card.reveal() == "3700-0000-0000-002"
    monkeypatch.setenv("MICROLIB_SECRET_KEY", new)  # the old key is gone
    with Host(f"duckdb:///{db}") as only_new:
        W = make_wallet()
        only_new.publish(W)
        cards = sorted(w.card.reveal() for w in await W.list())
        assert cards == ["3700-0000-0000-002", CARD, "5500-0000-0000-0004"]


async def test_key_rotation_offline_with_the_cli(
    host: Host, Wallet, db: Path, key: str, monkeypatch, capsys
) -> None:
    await fill(Wallet)
    url = f"duckdb:///{db}"
    assert cli(["secrets", "rotate", "--datasource", url]) == 1  # the host holds the file
    assert "already open by another Host" in capsys.readouterr().err
    host.close()
    new = new_key()
    monkeypatch.setenv("MICROLIB_SECRET_KEY", f"{new},{key}")
    assert cli(["secrets", "status", "--datasource", url]) == 0
    assert "wallets: 4 to re-encrypt, 0 already current, 0 unreadable" in capsys.readouterr().out
    assert cli(["secrets", "rotate", "--datasource", url]) == 0
    assert "wallets: 4 re-encrypted" in capsys.readouterr().out
    monkeypatch.setenv("MICROLIB_SECRET_KEY", new)
    assert cli(["secrets", "status", "--datasource", url]) == 0
    assert "0 to re-encrypt, 4 already current" in capsys.readouterr().out
    with Host(url) as h:
        W = make_wallet()
        h.publish(W)
        assert sorted(w.card.reveal() for w in await W.list())[0] == CARD
    monkeypatch.setenv("MICROLIB_SECRET_KEY", new_key())
    assert cli(["secrets", "status", "--datasource", url]) == 1
    assert "4 unreadable" in capsys.readouterr().out
    assert cli(["secrets", "rotate", "--datasource", "memory://"]) == 1
    assert "host.secrets.rotate()" in capsys.readouterr().err


async def test_turning_a_field_secret_needs_migrate(host: Host, db: Path) -> None:
    class Account(Model, endpoint="accounts"):
        iban: str

    host.publish(Account)
    a = await Account.create(iban="DE89370400440532013000")

    class Account(Model, endpoint="accounts"):  # type: ignore[no-redef]
        iban: Secret[str]

    with pytest.raises(DeployRefused, match="is a Secret now, but 1 stored row"):
        host.publish(Account)

    class Account(Model, endpoint="accounts"):  # type: ignore[no-redef]
        iban: Secret[str]

        @classmethod
        def migrate(cls, record: dict) -> dict:
            return record  # validated into a Secret, then encrypted

    host.publish(Account)
    assert (await Account.find(a.id)).iban.reveal() == "DE89370400440532013000"
    assert host.sql("SELECT iban FROM accounts").rows == [("***",)]

    class Account(Model, endpoint="accounts"):  # type: ignore[no-redef]
        iban: str

    with pytest.raises(DeployRefused, match="is not a Secret, but 1 stored row"):
        host.publish(Account)

    class Account(Model, endpoint="accounts"):  # type: ignore[no-redef]
        iban: str

        @classmethod
        def migrate(cls, record: dict) -> dict:
            return {**record, "iban": record["iban"].reveal()}

    host.publish(Account)
    assert (await Account.find(a.id)).iban == "DE89370400440532013000"


async def test_first_publish_in_a_new_process_checks_the_table(
    host: Host, Wallet, db: Path
) -> None:
    await fill(Wallet)
    host.close()
    with Host(f"duckdb:///{db}") as fresh:

        class Wallet(Model, endpoint="wallets"):  # type: ignore[no-redef]
            owner: str
            card: str  # forgot it is a secret

        with pytest.raises(DeployRefused, match=r"Wallet\.card is not a Secret"):
            fresh.publish(Wallet)


async def test_other_datasources_store_ciphertext_too(host: Host, tmp_path: Path) -> None:
    class Vault(Model, endpoint="vaults", datasource="file:///vaultdir"):
        name: str
        token: Secret[str]

    class Memo(Model, endpoint="memos", datasource="memory://"):
        token: Secret[str]

    host.publish(Vault)
    host.publish(Memo)
    v = await Vault.create(name="v", token=API_KEY)
    await Memo.create(token=API_KEY)
    docs = list((tmp_path / "vaultdir" / "vaults").glob("*.json"))
    assert docs and all(API_KEY not in d.read_text() for d in docs)
    assert json.loads(docs[0].read_text())["token"].startswith("mlsec1:")
    assert host.sql("SELECT v.token, m.token FROM vaults v, memos m").rows == [("***", "***")]
    host.cache.clear("vaults")
    assert (await Vault.find(v.id)).token.reveal() == API_KEY


KILLED_WRITER = """
import asyncio, os, sys
from microlib_kernel import Host, Model, Secret

class Wallet(Model, endpoint="wallets"):
    owner: str
    card: Secret[str]

async def main():
    host = Host(sys.argv[1])
    host.publish(Wallet)
    for i in range(3):
        await Wallet.create(owner=f"owner-control-value-{i}", card=sys.argv[2])
    os._exit(0)  # killed: no checkpoint, the WAL stays behind

asyncio.run(main())
"""


def test_a_killed_host_leaves_no_plaintext_in_its_wal(tmp_path: Path, key: str) -> None:
    db = tmp_path / "killed.duckdb"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    done = subprocess.run(
        [sys.executable, str(script), f"duckdb:///{db}", CARD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    wal = db.with_name(db.name + ".wal")
    assert wal.exists()
    for path in (db, wal):
        assert CARD.encode() not in path.read_bytes()
    assert b"owner-control-value-1" in wal.read_bytes()  # the scan sees the rows
    con = duckdb.connect(str(db))  # replays the WAL
    try:
        cards = [r[0] for r in con.execute("SELECT card FROM wallets").fetchall()]
    finally:
        con.close()
    assert len(cards) == 3 and all(c.startswith("mlsec1:") for c in cards)
