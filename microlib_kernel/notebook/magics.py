"""``%microlib`` and ``%%microlib``: one magic, subcommands in one dict.

Each subcommand is one small function registered with :func:`subcommand`; its
arguments are declared with IPython's ``magic_arguments`` and the help of
``%microlib?`` and ``%microlib help`` is derived from the dict. User mistakes and
errors of the host are raised as exactly ``UsageError`` (one line); tracebacks are
only shown when the user's own code raised.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from ..errors import MicrolibError
from . import cells
from .displays import Message, Report, Table, port_row, short
from .subcommands import SUBCOMMANDS, Subcommand, help_text, subcommand, unknown

if TYPE_CHECKING:
    from .session import NotebookSession
    from .targets import Target

__all__ = ["SUBCOMMANDS", "MicrolibMagics", "Subcommand", "help_text", "subcommand", "unknown"]


@magics_class
class MicrolibMagics(Magics):
    """The ``microlib`` magics, bound to one notebook session."""

    def __init__(self, shell: Any, session: NotebookSession) -> None:
        super().__init__(shell)
        self.session = session

    @line_cell_magic
    def microlib(self, line: str, cell: str | None = None) -> Any:
        name, _, rest = line.strip().partition(" ")
        sub = SUBCOMMANDS.get(name or "help")
        if sub is None:
            raise UsageError(unknown(name))
        if sub.cell and cell is None:
            raise UsageError(f"{name} is a cell magic: start a cell with %%microlib {name}")
        if not sub.cell and cell is not None:
            raise UsageError(f"%microlib {name} takes no cell; use it on a line of its own")
        if rest.strip() in ("-h", "--help"):
            print(help_text(sub.name))
            return None
        args = sub.parser.parse_argstring(rest)  # type: ignore[attr-defined]
        try:
            return sub.run(self, args, cell)
        except MicrolibError as exc:
            raise UsageError(exc.message) from None

    @property
    def host(self) -> Any:
        """The in-kernel host (``serve``, ``events``, ``load``, ``diagram`` act on it)."""
        return self.session.host

    @property
    def target(self) -> Target:
        """Where cells publish and ``status``, ``models``, ``rollback``... act."""
        return self.session.target

    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns  # type: ignore[union-attr]


def _identifier(name: str, what: str) -> str:
    if not name.isidentifier():
        raise UsageError(f"{what} names must be Python identifiers, got {name!r}")
    return name


def _nothing(message: str, serving: str) -> UsageError:
    return UsageError(f"nothing published: {message}" + (f"; {serving}" if serving else ""))


# -- cell magics ------------------------------------------------------------------------


@subcommand("model", cell=True)
@magic_arguments()
@argument("--version", metavar="X.Y.Z", help="pin the version (default: next patch)")
def _model(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> None:
    """Run the cell and publish every Model subclass it defines (all or none)."""
    run = cells.run_in_user_namespace(m.shell, cell or "", "model")
    classes = cells.models_bound(run)
    names = [c.__name__ for c in classes.values()]
    if not run.success:
        run.restore(classes)  # the names keep pointing at the classes still serving
        raise _nothing(f"the cell raised {run.failure()}", m.target.keeps_serving(names))
    if not classes:
        raise UsageError("the cell defines no Model subclass; nothing published")
    target, shown = m.target, list(classes.values())
    try:
        published = target.publish_models(shown, cell or "", args.version)
    except MicrolibError as exc:
        run.restore(classes)
        raise _nothing(exc.message, target.keeps_serving(names)) from None
    display(target.published_display(published, shown))


@subcommand("adapter", cell=True)
@magic_arguments()
@argument("name", metavar="NAME", help="adapter namespace: functions are bound as NAME.function")
def _adapter(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> None:
    """Bind every top-level function of the cell as adapter NAME.function."""
    name = _identifier(args.name, "adapter")
    run = cells.run_in_user_namespace(m.shell, cell or "", "adapter")
    if not run.success:
        raise UsageError(f"nothing bound: the cell raised {run.failure()}; {name}.* is unchanged")
    functions = cells.callables_bound(run, cell or "")
    if not functions:
        raise UsageError("the cell defines no function; nothing bound")
    display(Message(m.target.publish_adapters(name, functions, cell or "")))


@subcommand("service", cell=True)
@magic_arguments()
@argument("name", metavar="NAME", help="adapters receive it by a parameter of this name")
def _service(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> None:
    """Register the cell's last expression (or a variable named NAME) as a service."""
    name = _identifier(args.name, "service")
    run = cells.run_in_user_namespace(m.shell, cell or "", "service")
    if not run.success:
        raise UsageError(f"nothing registered: the cell raised {run.failure()}")
    obj = cells.service_bound(run, name)
    m.user_ns[name] = obj
    display(Message(m.target.publish_service(name, obj, cell or "")))


@subcommand("module", cell=True)
@magic_arguments()
@argument("name", metavar="NAME", help="module name: importable as microlib_modules.NAME")
def _module(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> None:
    """Install the cell as shared helper code, importable as microlib_modules.NAME."""
    name = _identifier(args.name, "module")
    module = cells.run_module(m.shell, name, cell or "")
    m.user_ns[name] = module
    display(Message(m.target.publish_module(name, cell or "")))


@subcommand("sql", cell=True)
@magic_arguments()
@argument("-o", "--output", metavar="VAR", help="also store the result in VAR")
def _sql(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """Run read-only SQL over the model tables; $name binds a notebook variable."""
    query = cell or ""
    if not query.strip():
        raise UsageError("the cell holds no query")
    if args.output is not None:
        _identifier(args.output, "-o variable")
    result = m.target.sql(query, cells.bind_sql_parameters(query, m.user_ns))
    if args.output is not None:
        m.user_ns[args.output] = result
    return result


# -- line magics ---------------------------------------------------------------------------


def _model_rows(m: MicrolibMagics, *, routes: bool) -> list[list[Any]]:
    rows = []
    for item in m.target.models():
        endpoint = (f"/{item['endpoint']}", m.target.endpoint_url(item["endpoint"]))
        if routes:
            weights = ", ".join(f"{v}={w:g}" for v, w in item["routes"].items())
            versions = ", ".join(item["versions"])
            rows.append(
                [item["name"], item["active"], versions, weights, str(item.get("deploys", ""))]
            )
        else:
            count = "?" if item["count"] is None else str(item["count"])
            rows.append([item["name"], item["active"], count, endpoint])
    return rows


@subcommand("status")
@magic_arguments()
def _status(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Report:
    """Host URL, datasource, and each model with its version, count and endpoint."""
    title = m.target.status_title()
    rows = _model_rows(m, routes=False)
    note = "" if rows else "no model published yet: define one in a %%microlib model cell"
    parts = [Table(title, ["model", "version", "count", "endpoint"], rows, note)]
    ports = [port_row(p) for p in m.target.ports_report()]
    if ports:
        parts.append(Table("ports", ["model", "port", "adapter", "state"], ports))
    return Report(parts)


@subcommand("models")
@magic_arguments()
def _models(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Table:
    """Published models, their versions, routes and deploy counts."""
    rows = _model_rows(m, routes=True)
    headers = ["model", "active", "versions", "routes", "deploys"]
    return Table("", headers, rows, "" if rows else "none")


@subcommand("serve")
@magic_arguments()
@argument("--port", type=int, metavar="N", help="port (default 8707 or the next free; 0: any)")
@argument("--bind", metavar="ADDR", help="address to bind (default 127.0.0.1)")
def _serve(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Start the background HTTP API (it starts by itself on the first publish)."""
    outcome = m.session.serve(args.port, args.bind)
    api, browser = m.host.api_url, m.session.serving.browser_api_url()
    return Message(
        f"{outcome.message()} (API {api}{m.session.serving.through_jupyter()})",
        {
            api: api,
            **({browser: browser} if browser else {}),
        },
    )


@subcommand("stop")
@magic_arguments()
def _stop(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Stop the background HTTP API and free its port."""
    return Message("stopped serving" if m.session.stop() else "not serving")


@subcommand("rollback")
@magic_arguments()
@argument("model", metavar="MODEL", help="model class name (any case)")
@argument("version", nargs="?", metavar="VERSION", help="default: the one before")
def _rollback(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Make an earlier version of a model active."""
    entry = m.target.rollback(args.model, args.version)
    return Message(f"{entry['name']} {entry['active']} is active")


@subcommand("route")
@magic_arguments()
@argument("model", metavar="MODEL", help="model class name (any case)")
@argument("weights", nargs="+", metavar="VERSION=WEIGHT", help="e.g. 1.0.0=90 1.0.1=10")
def _route(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Split traffic between versions by weight (sticky per instance id)."""
    weights: dict[str, float] = {}
    for item in args.weights:
        version, sep, weight = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            weights[version] = float(weight)
        except ValueError:
            raise UsageError(f"weights look like 1.0.1=10, got {item!r}") from None
    entry = m.target.route(args.model, weights)
    split = ", ".join(f"{v}={w:g}" for v, w in entry["routes"].items())
    return Message(f"{entry['name']} routes: {split}")


@subcommand("unpublish")
@magic_arguments()
@argument("model", metavar="MODEL", help="model class name (any case)")
def _unpublish(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Remove a model's endpoints; its table and data stay (SQL still reads them)."""
    entry = m.target.unpublish(args.model)
    return Message(f"{entry['name']} unpublished: /{entry['endpoint']} answers 404; its data stays")


@subcommand("connect")
@magic_arguments()
@argument("url", metavar="URL", help="the remote host's base URL (http://HOST:8707)")
@argument(
    "--token",
    metavar="T",
    help="its deploy token (default: MICROLIB_DEPLOY_TOKEN, then .microlib/deploy-token); "
    "also the API bearer token unless --api-token is given; --token=T for a token starting "
    "with -",
)
@argument(
    "--api-token",
    metavar="J",
    help="API bearer token (a JWT) for a host with auth on (default: MICROLIB_TOKEN)",
)
@argument("--cafile", metavar="F", help="CA that signed an https host's certificate")
def _connect(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Publish %%microlib cells to a remote host instead of the in-kernel one."""
    target = m.session.connect(args.url, args.token, api_token=args.api_token, cafile=args.cafile)
    api = target.api_url
    return Message(
        f"connected to {api}: %%microlib cells run here and are published there "
        "(%microlib disconnect to publish here again)",
        {api: api},
    )


@subcommand("disconnect")
@magic_arguments()
def _disconnect(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Publish %%microlib cells to the in-kernel host again."""
    url = m.session.disconnect()
    return Message(f"disconnected from {url}; cells publish here again" if url else "not connected")


@subcommand("events")
@magic_arguments()
@argument("pattern", nargs="?", metavar="PATTERN", help="a glob like 'order.*'")
@argument("-n", type=int, metavar="N", default=20, help="how many (default 20)")
def _events(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Table:
    """Recent events, newest last."""
    if args.n < 1:
        raise UsageError("-n must be at least 1")
    events = m.session.recent_events(args.pattern, args.n)
    rows: list[list[Any]] = [
        [e.time.strftime("%H:%M:%S.%f")[:-3], e.name, e.model_id or "", short(e.data)]
        for e in events
    ]
    return Table("", ["time", "event", "id", "data"], rows, "" if rows else "no events yet")


@subcommand("load")
@magic_arguments()
@argument("model", metavar="MODEL", help="model class name (any case)")
@argument("rows", metavar="VAR", help="a notebook variable: dicts, a DataFrame or a SqlResult")
@argument("--batch", type=int, metavar="N", default=1000, help="rows per write (default 1000)")
def _load(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Message:
    """Bulk-create instances from a notebook variable, with a progress bar."""
    from .bulk import bulk_load, rows_of

    if args.rows not in m.user_ns:
        raise UsageError(f"{args.rows} is not defined in the notebook")
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    rows = rows_of(m.user_ns[args.rows])
    name, loaded = bulk_load(m.host, args.model, rows, args.batch)
    return Message(f"loaded {loaded} {name} instance(s)")


@subcommand("dashboard")
@magic_arguments()
def _dashboard(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """A live panel: models with versions, counts and endpoints, and an event feed."""
    from .dashboard import Dashboard

    board = Dashboard(m.session)
    m.session.closers.append(board)
    return board


@subcommand("diagram")
@magic_arguments()
@argument("model", metavar="MODEL", help="model class name (any case)")
def _diagram(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """The model's port flow (ports chained by events, with undo) as an SVG picture."""
    from IPython.display import SVG

    try:
        from .diagram import port_flow_svg
    except ImportError:
        raise UsageError("port-flow diagrams are not available in this build") from None
    return SVG(data=port_flow_svg(m.host.model(args.model).spec()))


@subcommand("help")
@magic_arguments()
@argument("subcommand", nargs="?", metavar="SUBCOMMAND", help="show the options of one subcommand")
def _help(m: MicrolibMagics, args: argparse.Namespace, cell: str | None) -> None:
    """This help."""
    print(help_text(args.subcommand))


MicrolibMagics.microlib.__doc__ = help_text()
