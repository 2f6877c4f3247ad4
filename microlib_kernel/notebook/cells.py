"""Running ``%%microlib`` cells in the user namespace, and finding what they defined.

A model, adapter or service cell is ordinary notebook code: it runs through
``shell.run_cell`` in the user namespace, so the user's own errors show as normal
tracebacks and every definition stays visible in the notebook. What the cell bound is
found afterwards by comparing the namespace with a snapshot taken before.

A module cell runs in a module of its own, ``microlib_modules.NAME``, as it would on
any host it is deployed to.
"""

from __future__ import annotations

import ast
import linecache
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from ..domain.model import Model
from ..host.deploy import MODULES_PACKAGE, filename_for, modules_package

_MISSING = object()


@dataclass
class CellRun:
    """A cell run in the user namespace: what it bound and whether it raised."""

    shell: Any
    before: dict[str, Any]
    success: bool
    error: BaseException | None
    result: Any

    @property
    def namespace(self) -> dict[str, Any]:
        return self.shell.user_ns

    def bound(self) -> dict[str, Any]:
        """Names the cell bound to a new object (in the order they were bound)."""
        ns = self.namespace
        return {
            k: v
            for k, v in ns.items()
            if self.before.get(k, _MISSING) is not v and not k.startswith("_")
        }

    def restore(self, names: Iterable[str]) -> None:
        """Give ``names`` back the values they had before the cell (or unbind them)."""
        ns = self.namespace
        for name in names:
            old = self.before.get(name, _MISSING)
            if old is _MISSING:
                ns.pop(name, None)
            else:
                ns[name] = old

    def failure(self) -> str:
        """``"ZeroDivisionError"``: what the cell raised, for one-line messages."""
        return type(self.error).__name__ if self.error is not None else "an error"


def run_in_user_namespace(shell: Any, source: str, what: str) -> CellRun:
    """Run ``source`` like a notebook cell (tracebacks, display of the last expression).

    Raises:
        UsageError: the cell uses top-level ``await`` (a magic cannot run it on the
            kernel's loop, which is busy running the magic itself).
    """
    if shell.should_run_async(source, transformed_cell=shell.transform_cell(source)):
        raise UsageError(f"{what} cells cannot use top-level await; move it to another cell")
    before = dict(shell.user_ns)
    result = shell.run_cell(source, store_history=False)
    error = result.error_before_exec or result.error_in_exec
    return CellRun(shell, before, result.success, error, result.result)


def models_bound(run: CellRun) -> dict[str, type[Model]]:
    """The ``Model`` subclasses a cell defined (not imported, not already published)."""
    module = run.namespace.get("__name__", "__main__")
    found: dict[str, type[Model]] = {}
    seen: set[int] = set()
    for name, value in run.bound().items():
        if (
            isinstance(value, type)
            and issubclass(value, Model)
            and value is not Model
            and value.__module__ == module
            and value.__microlib_runtime__ is None
            and id(value) not in seen
        ):
            found[name] = value
            seen.add(id(value))
    return found


def callables_bound(run: CellRun, source: str) -> dict[str, Any]:
    """Public top-level functions and callable objects the cell defined (not imported).

    Classes are left out: in an adapter cell they are helpers, not adapters.
    """
    defined = top_level_definitions(run.shell.transform_cell(source))
    return {
        name: value
        for name, value in run.bound().items()
        if name in defined and callable(value) and not isinstance(value, type)
    }


def top_level_definitions(source: str) -> set[str]:
    """Names a source binds at top level by ``def``, ``class`` or assignment (not import)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def service_bound(run: CellRun, name: str) -> Any:
    """A service cell's object: a variable named ``name`` it bound, else its last value.

    Raises:
        UsageError: neither exists.
    """
    bound = run.bound()
    if name in bound:
        return bound[name]
    if run.result is not None:
        return run.result
    raise UsageError(
        f"the cell defines no service: end it with an expression (no trailing ';') "
        f"or assign a variable named {name}"
    )


def run_module(shell: Any, name: str, source: str) -> types.ModuleType:
    """Run a module cell as ``microlib_modules.NAME`` and make it importable.

    Raises:
        UsageError: the cell raised. Its traceback is shown first (it is the user's
            code), and the module that was importable before, if any, stays so.
    """
    pkg = modules_package()
    mod_name = f"{MODULES_PACKAGE}.{name}"
    filename = filename_for("module", name)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(mod_name)
    module.__file__ = filename
    previous = sys.modules.get(mod_name)
    sys.modules[mod_name] = module
    try:
        exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
    except Exception as exc:
        if previous is not None:
            sys.modules[mod_name] = previous
        else:
            sys.modules.pop(mod_name, None)
        # From the cell's first frame on: this function's frame is not the user's code.
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        shell.showtraceback((type(exc), exc, tb), tb_offset=0)
        kept = "; the earlier version stays importable" if previous is not None else ""
        raise UsageError(
            f"module {name} not installed: the cell raised {type(exc).__name__}{kept}"
        ) from None
    setattr(pkg, name, module)
    return module


_DOLLAR_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def sql_parameters(query: str) -> list[str]:
    """The ``$name`` parameters of a query, outside strings, quoted names and comments."""
    names: list[str] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch in "'\"":
            end = query.find(ch, i + 1)
            while end != -1 and end + 1 < n and query[end + 1] == ch:  # '' escapes
                end = query.find(ch, end + 2)
            i = n if end == -1 else end + 1
        elif query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end == -1 else end + 1
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif ch == "$":
            m = _DOLLAR_NAME.match(query, i)
            tag = None
            if query.startswith("$$", i):
                tag = "$$"
            elif m is not None and m.end() < n and query[m.end()] == "$":
                tag = query[i : m.end() + 1]  # $tag$...$tag$
            if tag is not None:  # a dollar-quoted string
                end = query.find(tag, i + len(tag))
                i = n if end == -1 else end + len(tag)
            elif m is not None:
                if m.group(1) not in names:
                    names.append(m.group(1))
                i = m.end()
            else:
                i += 1  # $1: a positional parameter
        else:
            i += 1
    return names


def bind_sql_parameters(query: str, namespace: dict[str, Any]) -> dict[str, Any] | None:
    """``{name: value}`` for every ``$name`` of ``query``, from the user namespace.

    Raises:
        UsageError: a ``$name`` that is not defined in the notebook.
    """
    names = sql_parameters(query)
    missing = [n for n in names if n not in namespace]
    if missing:
        raise UsageError(
            f"${missing[0]} is not defined in the notebook; assign it before the query "
            "(values are bound as query parameters, never pasted into the SQL)"
        )
    return {n: namespace[n] for n in names} or None
