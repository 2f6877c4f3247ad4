"""The ``microlib`` command.

Each subcommand is one small function registered in :data:`COMMANDS`; errors of the
``MicrolibError`` tree become one line on stderr and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .errors import MicrolibError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def subcommand(name: str, help: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as ``microlib NAME`` (``@arguments`` configures its parser)."""

    def register(fn: Handler) -> Handler:
        configure = getattr(fn, "configure", lambda p: None)
        COMMANDS[name] = (help, configure, fn)
        return fn

    return register


def arguments(configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    """Attach a parser configuration to a subcommand function."""

    def attach(fn: Handler) -> Handler:
        fn.configure = configure  # type: ignore[attr-defined]
        return fn

    return attach


def _param_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        dest="parameters", help="a papermill parameter (VALUE is JSON if it parses, else text)",
    )  # fmt: skip


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    return {name: _json_or_text(value) for name, value in args.parameters}


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="notebooks to deploy at start")
    p.add_argument("--port", type=int, help="HTTP port (default 8707; 0 picks a free one)")
    p.add_argument("--bind", help="address to bind (default 127.0.0.1)")
    p.add_argument("--datasource", help="default datasource URL (default: the DuckDB file)")
    p.add_argument(
        "--drain",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="answer with 503 /health for this long before stopping (default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no papermill progress bars")
    tls = p.add_argument_group("TLS (HTTPS)")
    tls.add_argument("--certfile", help="certificate chain (PEM); serves HTTPS with --keyfile")
    tls.add_argument("--keyfile", help="private key (PEM) of --certfile")
    tls.add_argument(
        "--cafile",
        help="CA that signed the certificate, for the notebooks deployed at start to trust "
        "it (default: MICROLIB_CAFILE, else the system's CAs)",
    )
    auth = p.add_argument_group("auth (JWT bearer tokens; off unless one of the first two)")
    auth.add_argument("--jwks-url", help="the token issuer's JWKS URL (MICROLIB_JWT_JWKS_URL)")
    auth.add_argument("--jwt-key", help="a static public key: PEM text or file (MICROLIB_JWT_KEY)")
    auth.add_argument("--jwt-audience", help="required aud claim (MICROLIB_JWT_AUDIENCE)")
    auth.add_argument("--jwt-issuer", help="required iss claim (MICROLIB_JWT_ISSUER)")
    auth.add_argument("--roles-claim", help="claim with the roles (default: roles)")
    auth.add_argument(
        "--auth-scopes", help='scope rules, e.g. "read:*=viewer,write:orders=clerk,sql=analyst"'
    )
    _param_args(p)


@subcommand("serve", "start a standalone host and deploy notebooks into it")
@arguments(_serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    from .config import Settings
    from .standalone import run_standalone

    settings = Settings.load(
        datasource=args.datasource,
        port=args.port,
        bind=args.bind,
        certfile=args.certfile,
        keyfile=args.keyfile,
        jwt_jwks_url=args.jwks_url,
        jwt_key=args.jwt_key,
        jwt_audience=args.jwt_audience,
        jwt_issuer=args.jwt_issuer,
        jwt_roles_claim=args.roles_claim,
        auth_scopes=args.auth_scopes,
    )
    return run_standalone(
        args.notebooks,
        settings=settings,
        parameters=_parameters(args),
        drain_seconds=args.drain,
        progress=not args.no_progress,
        cafile=args.cafile,
    )


def _deploy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK")
    p.add_argument("--to", dest="url", help="the host (default: MICROLIB_URL, else 127.0.0.1:8707)")
    p.add_argument(
        "--token",
        help="deploy token (default: MICROLIB_DEPLOY_TOKEN, else .microlib/deploy-token here)",
    )
    p.add_argument(
        "--output",
        help="where to keep the executed notebook "
        "(default: .microlib/deployments/<time>-<name>.ipynb)",
    )
    p.add_argument("--api-root", default="/microlib/api", help="the host's API root")
    p.add_argument(
        "--cafile",
        help="CA that signed an https host's certificate (default: MICROLIB_CAFILE, else the "
        "system's CAs)",
    )
    p.add_argument(
        "--api-token",
        help="API bearer token for a host with auth on (default: MICROLIB_TOKEN, else the "
        "deploy token)",
    )
    p.add_argument("--timeout", type=float, help="seconds for the whole run")
    p.add_argument("--no-progress", action="store_true", help="no papermill progress bar")
    _param_args(p)


@subcommand("deploy", "run a notebook with papermill so that it deploys into a running host")
@arguments(_deploy_args)
def cmd_deploy(args: argparse.Namespace) -> int:
    from .client import resolve_url
    from .deployer import deploy_notebook
    from .host.tokens import find_deploy_token

    token = find_deploy_token(args.token)
    if not token:
        raise MicrolibError(
            "no deploy token: pass --token, set MICROLIB_DEPLOY_TOKEN, or run where the "
            "host wrote .microlib/deploy-token"
        )
    result = deploy_notebook(
        args.notebook,
        target=resolve_url(args.url),
        token=token,
        parameters=_parameters(args),
        output=args.output,
        progress=not args.no_progress,
        timeout=args.timeout,
        api_root=args.api_root,
        cafile=args.cafile,
        api_token=args.api_token,
    )
    print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    print(f"record: {result.output}")
    return 0 if result.ok else 1


def _host_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", help="the host's URL (default: MICROLIB_URL, else http://127.0.0.1:8707)"
    )
    p.add_argument("--token", help="API token, when the host has auth on (default: MICROLIB_TOKEN)")
    p.add_argument("--cafile", help="CA of an https host (default: MICROLIB_CAFILE)")


def _sql_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", help="one read-only SQL query (tables are model endpoints)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--url", help="ask a running host (default: MICROLIB_URL, else http://127.0.0.1:8707)"
    )
    where.add_argument(
        "--datasource",
        help="read a datasource directly instead, e.g. duckdb:///.microlib/microlib.duckdb "
        "(no host may hold it open)",
    )
    p.add_argument("--token", help="API token, when the host has auth on (default: MICROLIB_TOKEN)")
    p.add_argument("--cafile", help="CA of an https host (default: MICROLIB_CAFILE)")
    p.add_argument(
        "--param",
        "-p",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="bind $NAME to VALUE (JSON if it parses, else text)",
    )
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")


@subcommand("sql", "run read-only SQL on a host or a datasource")
@arguments(_sql_args)
def cmd_sql(args: argparse.Namespace) -> int:
    params = {name: _json_or_text(value) for name, value in args.param} or None
    if args.datasource:
        result = _sql_on_datasource(args.datasource, args.query, params)
    else:
        with _client(args) as client:
            result = client.sql(args.query, params)
    _print_result(result, args.format)
    return 0


def _models_args(p: argparse.ArgumentParser) -> None:
    _host_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")


@subcommand("models", "list the models a host publishes: versions, routes, endpoints")
@arguments(_models_args)
def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models()
    if args.format == "json":
        print(json.dumps(models, indent=2))
        return 0
    rows = [
        (
            m["name"],
            m.get("active") or "-",
            ", ".join(m.get("versions", [])),
            " ".join(f"{v}={w:g}" for v, w in m.get("routes", {}).items()),
            f"{client.url}{client.api_root}/models/{m['endpoint']}",
        )
        for m in models
    ]
    _print_table(("model", "active", "versions", "routes", "endpoint"), rows)
    if not rows:
        print(f"no models published on {client.url}")
    return 0


def _client(args: argparse.Namespace) -> Any:
    from .client import HostClient

    return HostClient(
        args.url, args.token or os.environ.get("MICROLIB_TOKEN"), verify=args.cafile or None
    )


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _sql_on_datasource(url: str, query: str, params: Any) -> Any:
    """SQL straight on a datasource's tables (the host must not be running on it)."""
    from .host import Host

    host = Host(url)
    try:
        return host.sql(query, params)
    finally:
        host.close()


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _print_result(result: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(result.to_json(), indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.to_json()["rows"])
    else:
        print(result._text(limit=1000))


@subcommand("secret-key", "print a new key for MICROLIB_SECRET_KEY (Fernet)")
def cmd_secret_key(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def _secrets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=("rotate", "status"),
        help="rotate: re-encrypt every secret with the newest key; status: count only",
    )
    p.add_argument(
        "--datasource",
        default=None,
        help="a DuckDB datasource URL (default: MICROLIB_DATASOURCE or the settings)",
    )


@subcommand("secrets", "re-encrypt Secret fields with the newest MICROLIB_SECRET_KEY key")
@arguments(_secrets_args)
def cmd_secrets(args: argparse.Namespace) -> int:
    """``microlib secrets rotate|status``: offline, on a DuckDB file no host holds.

    ``MICROLIB_SECRET_KEY`` lists the keys newest first (``NEW,OLD``); ``rotate``
    re-encrypts every value sealed with an older key in one transaction. Exit code 1
    if some value opens with no key (it is left as it is).
    """
    from .config import Settings
    from .host.secret_keeper import rotate_datasource

    settings = Settings.load()
    url = args.datasource or settings.datasource
    report = rotate_datasource(url, settings, dry_run=args.action == "status")
    print(report)
    if not report.ok:
        print(
            "some values open with no key in MICROLIB_SECRET_KEY: keep the key they were "
            "encrypted with in the list",
            file=sys.stderr,
        )
        return 1
    return 0


def _kernel_args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help='install the "MicroLib (Python 3)" kernel spec (loads the extension on start)',
    )
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user (the default)")
    where.add_argument(
        "--sys-prefix", action="store_true", help="into this Python environment (sys.prefix)"
    )
    where.add_argument("--prefix", metavar="P", help="under P/share/jupyter/kernels")
    install.add_argument("--name", default="microlib", help="kernel name (default: %(default)s)")
    install.add_argument(
        "--display-name", default="MicroLib (Python 3)", help="name shown in the kernel menu"
    )


@subcommand("kernel", "install the MicroLib Jupyter kernel spec")
@arguments(_kernel_args)
def cmd_kernel(args: argparse.Namespace) -> int:
    from .notebook.kernelspec import install_kernel_spec

    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = install_kernel_spec(
        user=prefix is None, prefix=prefix, name=args.name, display_name=args.display_name
    )
    print(f"installed kernel spec {args.name} ({args.display_name}) in {path}")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    aws = targets.add_parser(
        "lambda",
        help="an AWS Lambda bundle: handler.handler, the cells as files, requirements, "
        "a SAM template and a README",
        description="Write a folder deployable as an AWS Lambda function serving the "
        "notebook's models (entry point handler.handler; see its README.md).",
    )
    aws.add_argument(
        "notebook", metavar="NOTEBOOK", help="the .ipynb whose %%%%microlib cells to export"
    )
    aws.add_argument("-o", "--output", required=True, metavar="DIR", help="the bundle folder")
    aws.add_argument(
        "--force", action="store_true", help="write into a non-empty folder (ours are replaced)"
    )
    aws.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="do not publish the cells into an in-memory host first (that runs their code)",
    )
    aws.add_argument(
        "--no-package",
        dest="package",
        action="store_false",
        help="do not copy microlib_kernel into the bundle (you install it there yourself)",
    )
    aws.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64")
    aws.add_argument("--memory", type=int, default=1024, metavar="MB", help="default: 1024")
    aws.add_argument("--timeout", type=int, default=30, metavar="S", help="default: 30")


@subcommand("export", "export a notebook's models for another platform (AWS Lambda)")
@arguments(_export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from .serverless.export import export_lambda

    bundle = export_lambda(
        args.notebook,
        args.output,
        force=args.force,
        check=args.check,
        package=args.package,
        architecture=args.arch,
        memory=args.memory,
        timeout=args.timeout,
    )
    print(bundle.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microlib",
        description="Microservice libraries in Jupyter: serve, deploy and query microlib hosts.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, configure, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``microlib`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except MicrolibError as exc:
        print(f"microlib {args.command}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
