"""plan_restore: the final state of a deployment log, and which sources to run (no code runs)."""

from __future__ import annotations

from microlib_kernel.host.restore import RestoreReport, deployment_of, plan_restore
from microlib_kernel.store.deployments import DeploymentRecord


def model(version: str, name: str = "Order", source: str | None = None, seq: int = 0):
    return DeploymentRecord(
        "model",
        (name,),
        (version,),
        source=source or f"# {name} {version}",
        endpoints=(name.lower() + "s",),
        seq=seq,
    )


def numbered(*records: DeploymentRecord) -> list[DeploymentRecord]:
    from dataclasses import replace

    return [replace(r, seq=i + 1) for i, r in enumerate(records)]


def test_evergreen_then_routes_then_rollback() -> None:
    plan = plan_restore(
        numbered(
            model("1.0.0"),
            model("1.0.1"),
            model("2.0.0"),
            DeploymentRecord("route", ("order",), weights={"1.0.0": 90, "2.0.0": 10}),
        ),
        keep=10,
    )
    state = plan.models["order"]
    assert state.name == "Order" and state.versions == ["1.0.0", "1.0.1", "2.0.0"]
    assert state.routes == {"1.0.0": 90.0, "2.0.0": 10.0} and state.published
    assert state.deploys == 3
    assert [wanted for _, wanted in plan.steps] == [
        {"order": "1.0.0"},
        {"order": "1.0.1"},
        {"order": "2.0.0"},
    ]

    rolled = plan_restore(
        numbered(
            model("1.0.0"), model("1.0.1"), DeploymentRecord("rollback", ("Order",), ("1.0.0",))
        ),
        keep=10,
    )
    assert rolled.models["order"].routes == {"1.0.0": 100.0}


def test_pruned_versions_are_not_run_and_routed_ones_are_kept() -> None:
    records = numbered(
        model("1.0.0"),
        DeploymentRecord("route", ("Order",), weights={"1.0.0": 100}),
        model("1.0.1"),
        model("1.0.2"),
        model("1.0.3"),
    )
    plan = plan_restore(records, keep=2)
    assert plan.models["order"].versions == ["1.0.2", "1.0.3"]
    assert [w["order"] for _, w in plan.steps] == ["1.0.2", "1.0.3"]


def test_unpublish_and_republish() -> None:
    plan = plan_restore(
        numbered(model("1.0.0"), DeploymentRecord("unpublish", ("Order",), (None,))), keep=10
    )
    assert plan.models["order"].published is False
    plan = plan_restore(
        numbered(
            model("1.0.0"), DeploymentRecord("unpublish", ("Order",), (None,)), model("1.0.1")
        ),
        keep=10,
    )
    assert plan.models["order"].published and plan.models["order"].routes == {"1.0.1": 100.0}


def test_last_adapter_and_service_source_every_module_in_order() -> None:
    records = numbered(
        DeploymentRecord("module", ("helpers",), (None,), source="A = 1"),
        DeploymentRecord("adapter", ("payments",), (None,), source="def a(o): pass"),
        model("1.0.0"),
        DeploymentRecord("module", ("helpers",), (None,), source="A = 2"),
        DeploymentRecord("adapter", ("payments",), (None,), source="def b(o): pass"),
        DeploymentRecord("service", ("api",), (None,), source="1"),
    )
    plan = plan_restore(records, keep=10)
    assert [(r.kind, r.source) for r, _ in plan.steps] == [
        ("module", "A = 1"),
        ("model", "# Order 1.0.0"),
        ("module", "A = 2"),
        ("adapter", "def b(o): pass"),
        ("service", "1"),
    ]


def test_a_source_defining_two_models_runs_once() -> None:
    both = DeploymentRecord(
        "model", ("Order", "Customer"), ("1.0.0", "1.0.0"), source="# both",
        endpoints=("orders", "customers"),
    )  # fmt: skip
    plan = plan_restore(numbered(both), keep=10)
    assert [w for _, w in plan.steps] == [{"order": "1.0.0", "customer": "1.0.0"}]
    assert set(plan.models) == {"order", "customer"}


def test_records_that_cannot_replay_are_skipped_with_the_reason() -> None:
    plan = plan_restore(
        numbered(
            model("1.0.0"),
            DeploymentRecord("route", ("Order",), weights={"9.9.9": 100}),
            DeploymentRecord("rollback", ("Ghost",), ("1.0.0",)),
        ),
        keep=10,
    )
    assert plan.models["order"].routes == {"1.0.0": 100.0}
    assert len(plan.skipped) == 2
    assert "record 2 (route Order)" in plan.skipped[0] and "9.9.9" in plan.skipped[0]
    assert "Ghost" in plan.skipped[1]


def test_an_empty_log_plans_nothing() -> None:
    plan = plan_restore([], keep=10)
    assert plan.steps == [] and plan.models == {} and plan.skipped == []


def test_report_summary_and_deployment_entries() -> None:
    report = RestoreReport(
        records=3,
        restored=["Order 1.0.0", "adapter payments"],
        failed=[{"name": "Order", "version": "1.0.1", "kind": "model", "error": "boom"}],
    )
    assert not report.ok
    assert report.summary() == (
        "restored 1 model version(s) and 1 adapter/service/module source(s) from 3 "
        "deployment record(s); FAILED: Order 1.0.1: boom"
    )
    route = deployment_of(DeploymentRecord("route", ("Order",), weights={"1.0.0": 1, "1.0.1": 2}))
    assert route.to_json()["versions"] == ["1.0.0", "1.0.1"] and route.kind == "route"
    assert deployment_of(DeploymentRecord("unpublish", ("Order",))).versions == [None]
