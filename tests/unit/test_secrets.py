"""``Secret`` values, the cipher and the masking helpers (no I/O)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel, ValidationError, model_validator

from microlib_kernel import MicrolibError, Model, Secret
from microlib_kernel.domain.secrets import MASK, is_secret_annotation, masked
from microlib_kernel.domain.types import value_type
from microlib_kernel.host.repository import validation_failed
from microlib_kernel.host.secrets import (
    PREFIX,
    RotationReport,
    SecretCipher,
    SecretError,
    mask_sealed,
    rotate_record,
)

PLAIN = "4111-1111-1111-1111"


class Card(BaseModel):
    number: Secret[str]
    pin: Secret[int] | None = None
    since: Secret[dt.datetime] | None = None
    meta: Secret[dict] | None = None
    label: str = ""

    @model_validator(mode="before")
    @classmethod
    def refuse(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("label") == "refuse":
            raise ValueError("refused")
        return data


def test_a_secret_masks_everywhere_but_reveal() -> None:
    c = Card(number=PLAIN, pin="1234", since="2024-01-02T03:04:05Z", meta={"k": [1]})
    assert str(c.number) == "***" and repr(c.number) == "Secret('***')"
    assert f"{c.number}|{c.number:>5}" == "***|  ***"
    assert PLAIN not in repr(c) and PLAIN not in str(c)
    assert c.number.reveal() == PLAIN and c.pin.reveal() == 1234
    assert c.since.reveal() == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert c.meta.reveal() == {"k": [1]}
    assert c.model_dump(mode="json") == {
        "number": MASK,
        "pin": MASK,
        "since": MASK,
        "meta": MASK,
        "label": "",
    }
    assert PLAIN not in c.model_dump_json()
    assert isinstance(c.model_dump()["number"], Secret)  # Python mode keeps the wrapper
    assert Card(number=PLAIN).pin is None and Card(number=PLAIN, pin=None).pin is None


def test_equality_hash_and_revalidation() -> None:
    a, b = Card(number=PLAIN), Card(number=PLAIN)
    assert a.number == b.number and hash(a.number) == hash(b.number)
    assert a.number != Card(number="other").number
    assert a.number != PLAIN  # a secret never equals a plain value
    again = Card(number=a.number)  # a Secret is accepted and revalidated
    assert again.number.reveal() == PLAIN
    with pytest.raises(ValidationError):
        Card(number=PLAIN, pin=Secret("not a number"))


def test_unreadable_secret_says_why_and_keeps_its_text() -> None:
    s = Secret.unreadable("mlsec1:xyz", "no key opens it")
    assert not s.readable and s.sealed == "mlsec1:xyz" and str(s) == MASK
    with pytest.raises(MicrolibError, match="cannot be read: no key opens it"):
        s.reveal()
    c = Card(number=s)  # kept as it is, not validated as a str
    assert c.number is s and c.model_dump(mode="json")["number"] == MASK


def test_schemas_and_value_types() -> None:
    ser = Card.model_json_schema(mode="serialization")["properties"]
    assert ser["number"]["const"] == MASK
    assert ser["pin"]["anyOf"][0]["const"] == MASK
    val = Card.model_json_schema(mode="validation")["properties"]
    assert val["number"] == {"format": "password", "title": "Number", "type": "string",
                             "writeOnly": True}  # fmt: skip
    assert val["pin"]["anyOf"][0] == {"type": "integer", "writeOnly": True}
    for name in ("number", "pin", "since", "meta"):
        t = value_type(Card.model_fields[name].annotation)
        assert t.kind == "string" and t.secret
    assert Secret[str] is Secret[str] and Secret[str].__name__ == "Secret[str]"
    assert is_secret_annotation(Secret[int] | None) and not is_secret_annotation(list[Secret[int]])


def test_secrets_the_host_could_not_encrypt_are_refused() -> None:
    with pytest.raises(TypeError, match="Secret must be the field's own type"):

        class A(Model):
            cards: list[Secret[str]] = []

    with pytest.raises(TypeError, match="Secret must be the field's own type"):

        class B(Model):
            card: Card | None = None

    with pytest.raises(TypeError, match="default must be None"):

        class C(Model):
            token: Secret[str] = "hard-coded"  # type: ignore[assignment]

    class D(Model):
        token: Secret[str] | None = None
        tokens: Secret[list[str]] | None = None

    assert D.spec().secret_fields == ("token", "tokens")
    assert D.spec().to_json()["fields"]["token"]["type"] == {"kind": "string", "secret": True}


def test_masked_replaces_secrets_inside_plain_data() -> None:
    c = Card(number=PLAIN)
    out = masked({"card": c.number, "list": [c.number, 1], "model": c})
    assert out == {"card": MASK, "list": [MASK, 1], "model": c.model_dump(mode="json")}


def test_validation_errors_never_echo_a_secret() -> None:
    with pytest.raises(ValidationError) as info:
        Card(number=PLAIN, pin="12x34")
    err = validation_failed(info.value, "Card", ("number", "pin"))
    assert "12x34" not in json.dumps(err.to_dict()) and err.errors[0]["input"] == MASK
    with pytest.raises(ValidationError) as info:
        Card(number=PLAIN, label="refuse")
    err = validation_failed(info.value, "Card", ("number", "pin"))
    assert err.errors[0]["input"]["number"] == MASK and PLAIN not in json.dumps(err.to_dict())


# -- the cipher ------------------------------------------------------------------------------


def keys(n: int) -> list[str]:
    return [Fernet.generate_key().decode() for _ in range(n)]


def test_seal_and_open_bound_to_their_place() -> None:
    cipher = SecretCipher(keys(1)[0])
    sealed = cipher.seal(PLAIN, table="cards", field="number", id="a1")
    assert sealed.startswith(PREFIX) and PLAIN not in sealed
    assert sealed != cipher.seal(PLAIN, table="cards", field="number", id="a1")  # random IV
    assert cipher.open(sealed, table="cards", field="number", id="a1") == PLAIN
    with pytest.raises(SecretError, match=r"encrypted for cards\.number of a1, not for"):
        cipher.open(sealed, table="cards", field="number", id="b2")
    with pytest.raises(SecretError, match="not encrypted"):
        cipher.open(PLAIN, table="cards", field="number", id="a1")
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretError, match="no key"):
        cipher.open(tampered, table="cards", field="number", id="a1")
    assert cipher.open(cipher.seal({"n": [1]}, table="t", field="f", id="i"), table="t",
                       field="f", id="i") == {"n": [1]}  # fmt: skip


def test_keys_newest_first_and_rotation() -> None:
    new, old = keys(2)
    sealed_old = SecretCipher(old).seal(PLAIN, table="t", field="f", id="1")
    both = SecretCipher(f"{new}, {old}")
    assert both.key_count == 2 and both.key_index(sealed_old) == 1
    assert both.open(sealed_old, table="t", field="f", id="1") == PLAIN
    rotated = both.rotate(sealed_old)
    assert both.key_index(rotated) == 0
    assert SecretCipher(new).open(rotated, table="t", field="f", id="1") == PLAIN
    assert SecretCipher(keys(1)[0]).key_index(rotated) is None

    report = RotationReport()
    record = {"id": "1", "a": sealed_old, "b": rotated, "c": PREFIX + "junk", "d": "x"}
    out = rotate_record(both, "t", record, report)
    assert out is not None and out["b"] == rotated and out["c"] == PREFIX + "junk"
    assert both.key_index(out["a"]) == 0
    assert report.to_json() == {"rotated": {"t": 1}, "current": {"t": 1}, "unreadable": {"t": 1}}
    assert not report.ok and "1 re-encrypted" in str(report)
    assert rotate_record(both, "t", {"id": "2", "b": rotated}, RotationReport()) is None


def test_bad_keys_are_refused_without_repeating_them() -> None:
    for bad in ("", " , ", "not-a-key", f"{keys(1)[0]},short"):
        with pytest.raises(MicrolibError) as info:
            SecretCipher(bad)
        assert "microlib secret-key" in info.value.message
        assert "short" not in info.value.message and "not-a-key" not in info.value.message


def test_mask_sealed_finds_ciphertext_anywhere() -> None:
    token = SecretCipher(keys(1)[0]).seal(PLAIN, table="t", field="f", id="1")
    assert mask_sealed(token) == MASK
    assert mask_sealed(token[:20]) == MASK  # a cut prefix too
    assert mask_sealed(f'{{"card":"{token}","n":1}}') == '{"card":"***","n":1}'
    assert mask_sealed([token, {"k": (token, 3)}, None, 7]) == [MASK, {"k": (MASK, 3)}, None, 7]
    assert mask_sealed("plain text") == "plain text"
