"""AWS Lambda cold start: the exported handler vs a minimal FastAPI + Mangum handler.

``notebooks/quickstart.ipynb`` is exported with ``microlib export lambda``; each
measurement is a fresh interpreter that imports ``handler`` (for microlib: the host,
the datasource and the notebook's model published) and answers its first invocation
(a Function URL ``GET /microlib/api/models/orders``). The baseline is the smallest
Lambda API most people would write: FastAPI with one route behind Mangum, answering the
same event. Runs alternate between the two; medians over fresh processes.

FastAPI is not a dependency of microlib-kernel. When the running Python cannot import
it, this script installs ``fastapi`` and ``mangum`` once into a virtualenv of its own,
``bench/out/lambda/fastapi-venv`` (it says so on stderr), so the project's environment
is left as it is.

    python bench/lambda_cold_start.py [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import Result, median_spread  # noqa: E402

COMMAND = "python bench/lambda_cold_start.py"
WORK = HERE / "out" / "lambda"
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
PATH = "/microlib/api/models/orders"
PACKAGES = ("fastapi", "mangum")

# A Function URL event (payload 2.0): GET the orders list.
EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": PATH,
    "rawQueryString": "",
    "headers": {"host": "bench.lambda-url.us-east-1.on.aws", "accept": "application/json"},
    "requestContext": {
        "http": {"method": "GET", "path": PATH, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
        "stage": "$default",
    },
    "isBase64Encoded": False,
}

# Runs in a fresh interpreter with the bundle on PYTHONPATH: what a cold start does.
DRIVER = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    import handler
    imported = time.perf_counter()
    reply = handler.handler(json.loads(sys.argv[1]), None)
    answered = time.perf_counter()
    assert reply["statusCode"] == 200, reply
    print(json.dumps({"import": imported - started, "first": answered - imported}))
    """
)

FASTAPI_HANDLER = textwrap.dedent(
    f"""
    from fastapi import FastAPI
    from mangum import Mangum

    app = FastAPI()


    @app.get({PATH!r})
    def orders() -> list[dict]:
        return []


    handler = Mangum(app, lifespan="off")
    """
)


def export_bundle(target: Path) -> None:
    """``microlib export lambda notebooks/quickstart.ipynb -o target``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "microlib_kernel.cli",
            "export",
            "lambda",
            str(NOTEBOOK),
            "-o",
            str(target),
            "--force",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fastapi_python() -> tuple[str, str]:
    """A Python that imports fastapi and mangum, and a note on where it came from."""
    probe = subprocess.run(
        [sys.executable, "-c", "import fastapi, mangum; print(fastapi.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        return sys.executable, f"FastAPI {probe.stdout.strip()} from the running environment"
    venv = WORK / "fastapi-venv"
    python = venv / "bin" / "python"
    if not python.exists() or _version(str(python)) is None:
        print(
            f"fastapi is not installed here: installing fastapi and mangum into {venv} "
            "(once; the project's environment is not touched)",
            file=sys.stderr,
            flush=True,
        )
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
            check=True,
            timeout=600,
        )
    return str(python), f"FastAPI {_version(str(python))} installed by the bench in {venv}"


def _version(python: str) -> str | None:
    out = subprocess.run(
        [python, "-c", "import fastapi, mangum; print(fastapi.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def cold_start(python: str, bundle: Path, env: dict[str, str]) -> dict[str, float]:
    """One fresh process: import the handler and answer the first event."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", DRIVER, json.dumps(EVENT)],
        cwd=bundle,
        env={**env, "PYTHONPATH": str(bundle), "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"a cold start of {bundle.name} took over 120 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"cold start of {bundle.name} failed: {stderr.strip()[-800:]}")
    times: dict[str, float] = json.loads(stdout.strip().splitlines()[-1])
    times["process"] = time.perf_counter() - started
    return times


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def run(quick: bool = False) -> list[Result]:
    repeat = 3 if quick else 9
    WORK.mkdir(parents=True, exist_ok=True)
    bundle = WORK / "bundle"
    export_bundle(bundle)
    baseline_dir = WORK / "fastapi-bundle"
    baseline_dir.mkdir(exist_ok=True)
    (baseline_dir / "handler.py").write_text(FASTAPI_HANDLER, encoding="utf-8")
    python, origin = fastapi_python()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROLIB_", "PYTHON"))}

    samples: dict[str, list[dict[str, float]]] = {"duckdb": [], "memory": [], "fastapi": []}
    with tempfile.TemporaryDirectory(prefix="lambda-tmp-") as tmp:
        for i in range(repeat):
            # A fresh /tmp DuckDB file per cold start, as a new Lambda instance has.
            duck = {**base_env, "MICROLIB_DATASOURCE": f"duckdb:///{tmp}/run-{i}.duckdb"}
            samples["duckdb"].append(cold_start(sys.executable, bundle, duck))
            samples["fastapi"].append(cold_start(python, baseline_dir, base_env))
            memory = {**base_env, "MICROLIB_DATASOURCE": "memory://"}
            samples["memory"].append(cold_start(sys.executable, bundle, memory))

    def total(name: str) -> list[float]:
        return _ms([s["import"] + s["first"] for s in samples[name]])

    def detail(name: str) -> dict[str, Any]:
        return {
            "import_ms": statistics.median(_ms([s["import"] for s in samples[name]])),
            "first_invocation_ms": statistics.median(_ms([s["first"] for s in samples[name]])),
            "process_ms": statistics.median(_ms([s["process"] for s in samples[name]])),
        }

    base, base_spread = median_spread(total("fastapi"))
    notes = (
        f"fresh process each run, {repeat} runs per side, alternating; time from the first "
        "line of the process to the first response (import + load models + first invocation); "
        f"baseline: {origin}"
    )
    results = []
    for name, what in (
        ("duckdb", "DuckDB file in /tmp, the Lambda default"),
        ("memory", "memory://"),
    ):
        value, spread = median_spread(total(name))
        results.append(
            Result(
                scenario=f"Lambda cold start: exported quickstart handler ({what})",
                metric="import + first invocation",
                value=value,
                unit="ms",
                baseline="minimal FastAPI + Mangum handler, one route",
                baseline_value=base,
                target="report the ratio",
                higher_is_better=False,
                spread=spread,
                baseline_spread=base_spread,
                command=COMMAND,
                notes=notes,
                details={"microlib": detail(name), "fastapi": detail("fastapi")},
            )
        )
    return results


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
