"""Cold start of an exported bundle in a fresh process, as Lambda runs it.

``microlib export lambda`` writes the bundle; a new interpreter with only the bundle
on ``PYTHONPATH`` (and no ``HOME``, as on Lambda) imports ``handler`` and invokes
``handler.handler`` with events of every source. The process must use the copy of
microlib_kernel inside the bundle, import nothing the bundle's requirements do not
name, and write nothing into the bundle (``/var/task`` is read-only on Lambda).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microlib_kernel.cli import main
from tests.lambda_support import SHOP

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import importlib.metadata as metadata
import json
import sys
import time

started = time.perf_counter()
import handler

imported = time.perf_counter()
sys.path.append(sys.argv[1])  # the repository, for tests.lambda_support (stdlib only)
from tests.lambda_support import LambdaContext, event, reply

ORDERS = "/microlib/api/models/orders"
out = {"import_seconds": imported - started}
ctx = LambdaContext()

first = reply(
    "rest_v1",
    handler.handler(
        event("rest_v1", "POST", ORDERS, body={"customer": "cold", "total": 4.0},
              headers={"Idempotency-Key": "cold-start-1"}),
        ctx,
    ),
)
out["first_invocation_seconds"] = time.perf_counter() - imported
out["create"] = [first.status, first.json(), first.header("location")]
got = reply("http_v2", handler.handler(event("http_v2", "GET", f"{ORDERS}/cold-start-1"), ctx))
out["get"] = [got.status, got.json()]
listed = reply(
    "alb",
    handler.handler(event("alb", "GET", ORDERS, query={"customer": "cold", "__count": "all"}), ctx),
)
out["count"] = [listed.status, listed.json()]
bad = reply("function_url", handler.handler(
    event("function_url", "POST", ORDERS, body={"customer": "x", "total": -5}), ctx))
out["invalid"] = [bad.status, bad.json()["error_type"]]
missing = reply("alb_multi", handler.handler(event("alb_multi", "GET", "/nope"), ctx))
out["unknown"] = [missing.status, missing.json()["error_type"]]
out["not_http"] = handler.handler({"source": "aws.events"}, ctx)["statusCode"]

import microlib_kernel

out["microlib_kernel"] = microlib_kernel.__file__
tops = {name.split(".")[0] for name in sys.modules}
owners = metadata.packages_distributions()
out["distributions"] = sorted({d for top in tops for d in owners.get(top, [])})
out["modules"] = sorted(tops)
print("RESULT " + json.dumps(out))
"""


def _names(requirements: str) -> set[str]:
    names = set()
    for line in requirements.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


@pytest.mark.slow
def test_cold_start_of_an_exported_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    assert main(["export", "lambda", str(SHOP), "-o", str(bundle)]) == 0, capsys.readouterr()
    before = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*"))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROLIB_", "PYTHON"))}
    env.pop("HOME", None)  # Lambda sets no HOME
    env.update(
        PYTHONPATH=str(bundle),
        PYTHONDONTWRITEBYTECODE="1",
        MICROLIB_DATASOURCE=f"duckdb:///{tmp_path}/instance-tmp/microlib.duckdb",
    )
    (tmp_path / "instance-tmp").mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(ROOT)],
        cwd=bundle,  # /var/task on Lambda
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the cold start did not finish in 120 s: {stderr[-2000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))

    status, created, location = out["create"]
    assert status == 201 and created["id"] == "cold-start-1"
    assert location == "/prod/microlib/api/models/orders/cold-start-1"
    status, found = out["get"]
    assert status == 200
    assert found["invoice"] == "INV-tart-1"  # the port ran (adapter + service + module)
    assert out["count"] == [200, {"total": 1}]
    assert out["invalid"] == [400, "ValidationFailed"]
    assert out["unknown"] == [404, "NotFound"]
    assert out["not_http"] == 400

    # The bundle's own copy of microlib_kernel served, and nothing of the notebook side.
    assert Path(out["microlib_kernel"]).resolve().is_relative_to(bundle.resolve())
    assert not set(out["modules"]) & {
        "IPython",
        "ipykernel",
        "ipywidgets",
        "jupyter_client",
        "papermill",
        "uvicorn",
        "httpx",
        "zmq",
        "tornado",
    }
    allowed = _names((bundle / "requirements.txt").read_text()) | {
        "microlib-kernel",  # the copy in the bundle (also installed here, editable)
        "setuptools",  # its .pth hook, present in every venv
    }
    used = {d.lower().replace("_", "-") for d in out["distributions"]}
    assert used <= allowed, used - allowed
    # Nothing was written into the bundle (read-only /var/task on Lambda).
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")) == before
