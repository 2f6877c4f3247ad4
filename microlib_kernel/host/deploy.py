"""Code streaming: running model, adapter, service and module sources in fresh namespaces.

A source runs in a new module registered in ``sys.modules`` (pydantic resolves
annotations through it), with its text in ``linecache`` so tracebacks show it. A
source that raises is reported with line numbers relative to the source itself.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import linecache
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any, Literal

from ..domain.model import Model
from ..errors import DeployRefused

Kind = Literal["model", "adapter", "service", "module"]
KINDS: tuple[str, ...] = ("model", "adapter", "service", "module")
MODULES_PACKAGE = "microlib_modules"

_counter = itertools.count(1)


@dataclass(frozen=True)
class Published:
    """What a publish produced: ``endpoint`` and ``version`` are ``None`` for non-models."""

    name: str
    version: str | None
    endpoint: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "endpoint": self.endpoint}


@dataclass(frozen=True)
class Deployment:
    """One entry of the deployment log: what was published, when, by whom."""

    time: dt.datetime
    kind: str
    names: list[str]
    versions: list[str | None]
    who: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "kind": self.kind,
            "names": list(self.names),
            "versions": list(self.versions),
            "who": self.who,
        }


def filename_for(kind: str, name: str | None) -> str:
    return f"<microlib {kind} {name or ''}#{next(_counter)}>".replace(" #", "#")


def run_source(
    source: str, *, kind: str, name: str | None, module_name: str | None = None
) -> types.ModuleType:
    """Execute ``source`` in a fresh module and return it.

    Raises:
        DeployRefused: the source does not compile or raises; the message gives the
            error and its line in the source.
    """
    if not isinstance(source, str):
        raise DeployRefused(f"source must be text, got {type(source).__name__}")
    filename = filename_for(kind, name)
    mod_name = module_name or f"microlib_deployed_{next(_counter)}"
    module = types.ModuleType(mod_name)
    module.__file__ = filename
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compile(_tree(source, kind, name), filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise DeployRefused(
            f"{kind} source does not compile: line {exc.lineno}: {exc.msg}",
            line=exc.lineno,
            kind=kind,
        ) from None
    previous = sys.modules.get(mod_name)
    sys.modules[mod_name] = module
    try:
        exec(code, module.__dict__)
    except BaseException as exc:
        if previous is not None:
            sys.modules[mod_name] = previous
        else:
            sys.modules.pop(mod_name, None)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        line = source_line(exc, filename)
        where = f"line {line}: " if line else ""
        raise DeployRefused(
            f"{kind} source raised {where}{type(exc).__name__}: {exc}",
            line=line,
            kind=kind,
        ) from None
    return module


#: Where a service source's trailing expression is kept (so it is evaluated once).
SERVICE_RESULT = "__microlib_service__"


def _tree(source: str, kind: str, name: str | None) -> ast.Module:
    """The source's syntax tree; a service's trailing expression becomes an assignment.

    Raises:
        SyntaxError: the source does not parse.
    """
    tree = ast.parse(source)
    last = tree.body[-1] if tree.body else None
    if kind == "service" and isinstance(last, ast.Expr):
        target = ast.Name(SERVICE_RESULT, ast.Store())
        tree.body[-1] = ast.copy_location(ast.Assign([target], last.value), last)
        ast.fix_missing_locations(tree)
    return tree


def source_line(exc: BaseException, filename: str) -> int | None:
    """The deepest line of ``exc``'s traceback inside the source called ``filename``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def models_defined(module: types.ModuleType) -> list[type[Model]]:
    """The ``Model`` subclasses a module defines itself (not ones it imports)."""
    return [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, Model)
        and v is not Model
        and v.__module__ == module.__name__
    ]


def service_object(source: str, module: types.ModuleType, name: str) -> Any:
    """A service source's object: a variable named ``name``, else its last expression.

    Raises:
        DeployRefused: neither exists.
    """
    if name in vars(module):
        return vars(module)[name]
    if SERVICE_RESULT in vars(module):  # the trailing expression, evaluated once by the run
        return vars(module)[SERVICE_RESULT]
    raise DeployRefused(
        f"service source defines no object: end it with an expression or assign a variable "
        f"named {name!r}"
    )


def modules_package() -> types.ModuleType:
    """The ``microlib_modules`` package that module sources are importable from."""
    pkg = sys.modules.get(MODULES_PACKAGE)
    if pkg is None:
        pkg = types.ModuleType(MODULES_PACKAGE)
        pkg.__path__ = []
        pkg.__doc__ = "Helper modules deployed with %%microlib module / kind='module'."
        sys.modules[MODULES_PACKAGE] = pkg
    return pkg


def install_module(name: str, source: str) -> types.ModuleType:
    """Run a module source and make it importable as ``microlib_modules.NAME``."""
    if not name.isidentifier():
        raise DeployRefused(f"module names must be Python identifiers, got {name!r}")
    pkg = modules_package()
    module = run_source(source, kind="module", name=name, module_name=f"{MODULES_PACKAGE}.{name}")
    setattr(pkg, name, module)
    return module


def installed_module(name: str) -> types.ModuleType | None:
    """The module installed as ``microlib_modules.NAME``, if any."""
    return sys.modules.get(f"{MODULES_PACKAGE}.{name}")


def reinstall_module(name: str, module: types.ModuleType | None) -> None:
    """Put ``microlib_modules.NAME`` back to ``module`` (``None``: remove it)."""
    pkg = modules_package()
    if module is None:
        sys.modules.pop(f"{MODULES_PACKAGE}.{name}", None)
        if hasattr(pkg, name):
            delattr(pkg, name)
    else:
        sys.modules[f"{MODULES_PACKAGE}.{name}"] = module
        setattr(pkg, name, module)
