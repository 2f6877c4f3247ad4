"""Pure pieces of hot deployment: class lines, defaults across versions, service sources."""

from __future__ import annotations

import datetime as dt

from microlib_kernel import Model
from microlib_kernel.errors import DeployRefused
from microlib_kernel.host.deploy import SERVICE_RESULT, run_source, service_object
from microlib_kernel.host.publishing import class_lines, column_defaults, with_class_line
from microlib_kernel.host.registry import ModelEntry, ModelVersion

SOURCE = "import x\n\nclass Order(Model):\n    pass\n\n\nclass OrderLine(Model):\n    pass\n"


def test_class_lines_and_refusals_naming_a_class() -> None:
    assert class_lines(SOURCE) == {"Order": 3, "OrderLine": 7}
    assert class_lines("def broken(:") == {}

    class Order(Model):
        pass

    class OrderLine(Model):
        pass

    refused = with_class_line(
        DeployRefused("OrderLine 1.0.1 adds a field"), SOURCE, [Order, OrderLine]
    )
    assert refused.details["line"] == 7  # a whole word: "OrderLine", not "Order"
    kept = DeployRefused("source raised", line=2)
    assert with_class_line(kept, SOURCE, [Order]) is kept
    unnamed = DeployRefused("something else")
    assert with_class_line(unnamed, SOURCE, [Order]) is unnamed


def _version(cls: type[Model], version: str) -> ModelVersion:
    return ModelVersion("Order", version, cls, cls.spec(), dt.datetime.now(dt.UTC))


def test_column_defaults_keep_every_version_newest_first() -> None:
    class V1(Model):
        total: float = 1.0
        gone: str = "kept"
        note: str | None = None

    class V2(Model):
        total: float = 2.0
        added: int = 7
        note: str  # required now: no default to fill

    entry = ModelEntry("Order", "orders")
    entry.versions["1.0.0"] = _version(V1, "1.0.0")
    defaults = column_defaults(entry, _version(V2, "1.0.1"))
    assert defaults == {"total": 2.0, "gone": "kept", "added": 7}
    assert column_defaults(None, _version(V1, "1.0.0")) == {"total": 1.0, "gone": "kept"}


def test_a_service_source_evaluates_its_last_expression_once() -> None:
    source = "made = []\nclass S:\n    def __init__(self):\n        made.append(1)\nS()\n"
    module = run_source(source, kind="service", name="svc")
    obj = service_object(source, module, "svc")
    assert type(obj).__name__ == "S" and module.made == [1]
    assert vars(module)[SERVICE_RESULT] is obj
    named = run_source("svc = 3\n4\n", kind="service", name="svc")
    assert service_object("", named, "svc") == 3  # a variable named like the service wins
