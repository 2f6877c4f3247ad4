"""Settings layers and the version registry (versions, rollback, weighted sticky routes)."""

from __future__ import annotations

import collections
import datetime as dt
import json
from pathlib import Path

import pytest

from microlib_kernel import DeployRefused, MicrolibError, NotFound
from microlib_kernel.config import Settings
from microlib_kernel.host.registry import ModelVersion, VersionRegistry
from tests.models import make_models


def test_settings_layers(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.microlib]\nport = 9000\ncache-size = 10\ndatasource = "memory://"\n'
    )
    s = Settings.load(cwd=tmp_path, env={"MICROLIB_PORT": "9100", "MICROLIB_SERVE": "0"})
    assert (
        s.port == 9100 and s.cache_size == 10 and s.datasource == "memory://" and s.serve is False
    )
    s = Settings.load(cwd=tmp_path, env={"MICROLIB_PORT": "9100"}, port=9200)
    assert s.port == 9200
    assert Settings.load(cwd=tmp_path, env={}).port == 9000
    assert Settings.load(cwd=tmp_path / "nowhere", env={}).port == 8707


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(MicrolibError, match="setting port"):
        Settings.load(cwd=tmp_path, env={"MICROLIB_PORT": "eighty"})
    (tmp_path / "pyproject.toml").write_text("[tool.microlib]\ncolour = 1\n")
    with pytest.raises(MicrolibError, match="unknown setting"):
        Settings.load(cwd=tmp_path, env={})


def test_auth_tokens_parse() -> None:
    s = Settings.load(env={"MICROLIB_AUTH_TOKENS": "t1=admin+write, t2=read"})
    assert s.auth_tokens == {"t1": ("admin", "write"), "t2": ("read",)}


def _version(reg: VersionRegistry, cls: type, pinned: str | None = None) -> ModelVersion:
    mv = ModelVersion(
        cls.__name__,
        reg.next_version(cls.__name__, pinned),
        cls,
        cls.spec(),
        dt.datetime.now(dt.UTC),
    )
    reg.add(mv)
    return mv


def test_versions_bump_and_roll_back() -> None:
    Order, _ = make_models()
    reg = VersionRegistry(keep=3)
    assert _version(reg, Order).version == "1.0.0"
    assert _version(reg, Order).version == "1.0.1"
    assert _version(reg, Order, "2.0.0").version == "2.0.0"
    assert _version(reg, Order).version == "2.0.1"
    entry = reg.get("order")  # names are case-insensitive
    assert list(entry.versions) == ["1.0.1", "2.0.0", "2.0.1"]  # keep=3
    assert entry.active == "2.0.1"
    reg.rollback("ORDER")
    assert entry.active == "2.0.0"
    reg.rollback("Order", "1.0.1")
    assert entry.active == "1.0.1"
    with pytest.raises(NotFound, match="no version"):
        reg.rollback("Order", "9.9.9")
    with pytest.raises(DeployRefused, match="already published"):
        reg.next_version("Order", "2.0.0")
    with pytest.raises(DeployRefused, match=r"MAJOR\.MINOR\.PATCH"):
        reg.next_version("Order", "two")
    with pytest.raises(NotFound, match="no model named"):
        reg.get("Nope")
    assert json.loads(json.dumps(reg.to_json()))["models"][0]["name"] == "Order"


def test_weighted_routes_are_sticky_and_proportional() -> None:
    Order, _ = make_models()
    reg = VersionRegistry()
    _version(reg, Order)
    _version(reg, Order)
    entry = reg.route("Order", {"1.0.0": 90, "1.0.1": 10})
    picks = collections.Counter(entry.pick(f"id-{i}").version for i in range(5000))
    assert 0.86 < picks["1.0.0"] / 5000 < 0.94
    assert all(entry.pick("same").version == entry.pick("same").version for _ in range(20))
    with pytest.raises(DeployRefused):
        reg.route("Order", {"1.0.0": -1})
    with pytest.raises(DeployRefused):
        reg.route("Order", {"1.0.0": 0})
    with pytest.raises(NotFound):
        reg.route("Order", {"3.0.0": 1})
