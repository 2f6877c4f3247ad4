"""Shared pieces of the benchmarks: results, timing helpers, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any


@dataclass
class Result:
    """One scenario's outcome, compared with a baseline measured in the same run.

    ``ratio`` is value / baseline; ``higher_is_better`` says which way the target points.
    """

    scenario: str
    metric: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    target_ratio: float | None = None
    higher_is_better: bool = True
    spread: tuple[float, float] | None = None
    baseline_spread: tuple[float, float] | None = None
    command: str = ""
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        if self.target_ratio is None:
            return None
        if self.ratio is None:
            return None
        if self.higher_is_better:
            return self.ratio >= self.target_ratio
        return self.ratio <= self.target_ratio

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def compared(
    name: str,
    metric: str,
    unit: str,
    values: list[float],
    base: list[float],
    baseline: str,
    command: str,
    scale: float = 1.0,
) -> Result:
    """A lower-is-better :class:`Result` from two samples (medians, min–max spreads)."""
    v, s = median_spread([x * scale for x in values])
    b, bs = median_spread([x * scale for x in base])
    return Result(
        scenario=name,
        metric=metric,
        value=v,
        unit=unit,
        baseline=baseline,
        baseline_value=b,
        higher_is_better=False,
        spread=s,
        baseline_spread=bs,
        command=command,
    )


def median_spread(values: list[float]) -> tuple[float, tuple[float, float]]:
    return statistics.median(values), (min(values), max(values))


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def machine() -> dict[str, Any]:
    """The facts a reader needs to weigh the numbers."""
    libs = {}
    for name in (
        "microlib-kernel",
        "duckdb",
        "pydantic",
        "starlette",
        "uvicorn",
        "httpx",
        "ipykernel",
        "papermill",
    ):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = "not installed"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": libs,
        "commit": commit,
        "load_average": os.getloadavg(),
        "fsync_ms": fsync_ms(),
    }


def fsync_ms(writes: int = 200) -> float:
    """Median time of a small write + ``fsync`` in a temporary folder, in milliseconds.

    Durable-commit baselines (SQLite with ``synchronous=FULL``) pay this once per request,
    the group commit once per batch: how the two compare depends on it, so it is recorded.
    """
    import tempfile

    times = []
    with tempfile.TemporaryDirectory() as folder:
        fd = os.open(os.path.join(folder, "probe"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(writes):
                start = time.perf_counter()
                os.write(fd, b"x" * 128)
                os.fsync(fd)
                times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
    return statistics.median(times) * 1000


def rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    with open("/proc/self/statm", encoding="utf-8") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
