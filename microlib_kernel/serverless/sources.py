"""The deployable sources of a notebook, and the folder format they are exported in.

A notebook's ``%%microlib model|adapter|service|module`` cells are what a host runs
when the notebook is streamed to it (``host.publish(text, kind=..., name=...,
version=...)``). This module finds them without a Jupyter kernel -- an ``.ipynb`` file
is JSON -- and writes or reads them as a folder of plain ``.py`` files with a
``manifest.json`` saying their order, kinds, names and versions.

Nothing here imports IPython, Mangum or the host: the export command and a Lambda
cold start both use it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeployRefused

#: Cell kinds a host publishes, in the words of the ``%%microlib`` magic.
DEPLOYABLE = ("model", "adapter", "service", "module")
#: ``%%microlib`` cells that are notebook-only (they query, they deploy nothing).
NOTEBOOK_ONLY = ("sql",)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_MAGIC = "%%microlib"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_FILE_NAME = re.compile(r"^(\d+)_(model|adapter|service|module)(?:_([A-Za-z_][A-Za-z0-9_]*))?\.py$")


@dataclass(frozen=True)
class Source:
    """One deployable source: what ``host.publish(text, kind=, name=, version=)`` takes.

    Attributes:
        kind: ``model``, ``adapter``, ``service`` or ``module``.
        name: the adapter namespace, service or module name (``None`` for models).
        version: a pinned model version (``--version``), else ``None``.
        text: the Python source (the cell without its ``%%microlib`` line).
        origin: where it came from, for error messages (``quickstart.ipynb cell 4``).
        cell: the 1-based position of the notebook cell, when it came from one.
    """

    kind: str
    name: str | None
    version: str | None
    text: str
    origin: str
    cell: int | None = None

    def file_name(self, position: int, width: int = 2) -> str:
        """``03_adapter_payments.py``: the file this source is exported as."""
        suffix = f"_{self.name}" if self.name else ""
        return f"{position:0{width}d}_{self.kind}{suffix}.py"


# -- notebooks -----------------------------------------------------------------------------


def notebook_sources(path: str | os.PathLike[str]) -> list[Source]:
    """The deployable ``%%microlib`` cells of an ``.ipynb`` file, in notebook order.

    Other cells (markdown, plain code, ``%%microlib sql``) are left out: on a host
    only what a notebook publishes exists.

    Raises:
        DeployRefused: the file cannot be read, is not an nbformat 4 notebook, or a
            ``%%microlib`` cell line is malformed (the message names the cell).
    """
    nb_path = Path(path)
    try:
        document = json.loads(nb_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployRefused(f"cannot read notebook {nb_path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DeployRefused(f"{nb_path} is not a notebook (invalid JSON: {exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        major = document.get("nbformat") if isinstance(document, dict) else None
        hint = f" (it is nbformat {major}; open and save it in Jupyter)" if major else ""
        raise DeployRefused(f"{nb_path} is not an nbformat 4 notebook{hint}")
    found: list[Source] = []
    for number, cell in enumerate(document["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        origin = f"{nb_path.name} cell {number}"
        source = parse_cell(_cell_text(cell.get("source", "")), origin, number)
        if source is not None:
            found.append(source)
    return found


def _cell_text(raw: Any) -> str:
    if isinstance(raw, list):
        return "".join(str(part) for part in raw)
    return str(raw)


def parse_cell(text: str, origin: str, cell: int | None = None) -> Source | None:
    """The source of one code cell, or ``None`` if it deploys nothing.

    Raises:
        DeployRefused: a ``%%microlib`` line that the magic would refuse.
    """
    lines = text.splitlines(keepends=True)
    while lines and not lines[0].strip():
        lines.pop(0)  # IPython drops leading empty lines before looking for %%
    if not lines or not lines[0].startswith(_MAGIC):
        return None
    header = lines[0].rstrip("\r\n")
    if header[len(_MAGIC) :][:1] not in ("", " ", "\t"):
        return None  # another magic whose name starts like ours
    try:
        words = shlex.split(header[len(_MAGIC) :])
    except ValueError as exc:
        raise DeployRefused(f"{origin}: cannot parse {header!r}: {exc}") from None
    kind, args = (words[0], words[1:]) if words else ("", [])
    if kind in NOTEBOOK_ONLY:
        return None
    if kind not in DEPLOYABLE:
        raise DeployRefused(
            f"{origin}: {header!r} is not a deployable cell; a %%microlib cell starts with "
            f"one of: {', '.join(DEPLOYABLE + NOTEBOOK_ONLY)}"
        )
    body = "".join(lines[1:])
    if kind == "model":
        return Source("model", None, _model_version(args, origin, header), body, origin, cell)
    if len(args) != 1 or not args[0].isidentifier():
        raise DeployRefused(f"{origin}: {header!r} needs one NAME that is a Python identifier")
    return Source(kind, args[0], None, body, origin, cell)


def _model_version(args: Sequence[str], origin: str, header: str) -> str | None:
    version: str | None = None
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word == "--version" and rest:
            version = rest.pop(0)
        elif word.startswith("--version="):
            version = word.partition("=")[2]
        else:
            raise DeployRefused(
                f"{origin}: {header!r}: unexpected {word!r} (a model cell takes only "
                "--version X.Y.Z)"
            )
        if not _VERSION.match(version):
            raise DeployRefused(f"{origin}: --version must look like 1.2.0, got {version!r}")
    return version


# -- exported folders ----------------------------------------------------------------------


def write_sources(
    folder: str | os.PathLike[str], sources: Sequence[Source], **about: Any
) -> dict[str, Any]:
    """Write ``sources`` as ``NN_kind[_name].py`` files and a ``manifest.json``.

    Args:
        folder: created if missing; files of an earlier export are replaced.
        sources: in publishing order.
        about: extra manifest entries (``notebook``, ``exported``, ``microlib_kernel``).

    Returns:
        The manifest written.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(sources))))
    entries = []
    for position, source in enumerate(sources, start=1):
        file = source.file_name(position, width)
        text = source.text if source.text.endswith("\n") or not source.text else source.text + "\n"
        (out / file).write_text(text, encoding="utf-8")
        entries.append(
            {
                "file": file,
                "kind": source.kind,
                "name": source.name,
                "version": source.version,
                "origin": source.origin,
            }
        )
    manifest = {"format": MANIFEST_FORMAT, **about, "sources": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def folder_sources(folder: str | os.PathLike[str]) -> list[Source]:
    """The sources of an exported folder: in ``manifest.json`` order, else by file name.

    Without a manifest, files named ``NN_kind.py`` or ``NN_kind_NAME.py`` are taken in
    the order of ``NN`` (``01_module_pricing.py``, ``02_model.py``).

    Raises:
        DeployRefused: an unreadable or inconsistent manifest, a missing file, or a
            folder with nothing to publish.
    """
    root = Path(folder)
    manifest = root / MANIFEST
    if manifest.is_file():
        return _manifest_sources(root, manifest)
    named = sorted(
        (int(m.group(1)), p.name, m)
        for p in root.iterdir()
        if (m := _FILE_NAME.match(p.name)) is not None
    )
    if not named:
        raise DeployRefused(
            f"{root} holds no {MANIFEST} and no NN_kind[_name].py source files "
            "(write one with `microlib export lambda NOTEBOOK -o DIR`)"
        )
    return [
        Source(m.group(2), m.group(3), None, _read(root / file), f"{root.name}/{file}")
        for _, file, m in named
    ]


def _manifest_sources(root: Path, manifest: Path) -> list[Source]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data["sources"]
        if not isinstance(entries, list):
            raise TypeError("'sources' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeployRefused(f"cannot read {manifest}: {exc}") from None
    if data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
        raise DeployRefused(
            f"{manifest} has format {data.get('format')!r}; this microlib-kernel reads format "
            f"{MANIFEST_FORMAT}: export the notebook again"
        )
    sources = []
    for index, entry in enumerate(entries, start=1):
        where = f"{manifest.name} entry {index}"
        if not isinstance(entry, dict):
            raise DeployRefused(f"{where} is not an object")
        kind, name, version, file = (
            entry.get("kind"),
            entry.get("name"),
            entry.get("version"),
            entry.get("file"),
        )
        if kind not in DEPLOYABLE:
            raise DeployRefused(f"{where}: kind must be one of {', '.join(DEPLOYABLE)}")
        if kind != "model" and not (isinstance(name, str) and name.isidentifier()):
            raise DeployRefused(f"{where}: a {kind} needs a name that is a Python identifier")
        if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
            raise DeployRefused(f"{where}: version must look like 1.2.0, got {version!r}")
        if not isinstance(file, str) or Path(file).name != file or not file.endswith(".py"):
            raise DeployRefused(f"{where}: file must be a .py file name in {root}, got {file!r}")
        origin = str(entry.get("origin") or f"{root.name}/{file}")
        sources.append(
            Source(kind, name if kind != "model" else None, version, _read(root / file), origin)
        )
    return sources


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployRefused(f"cannot read source {path}: {exc.strerror or exc}") from None


def load_sources(source: str | os.PathLike[str]) -> list[Source]:
    """The sources of a notebook (``.ipynb``) or of an exported folder.

    Raises:
        DeployRefused: neither, or unreadable.
    """
    path = Path(source)
    if path.is_dir():
        return folder_sources(path)
    if path.suffix == ".ipynb":
        return notebook_sources(path)
    if not path.exists():
        raise DeployRefused(f"{path} does not exist (give a notebook or an exported folder)")
    raise DeployRefused(f"{path} is neither a notebook (.ipynb) nor a folder of exported sources")
