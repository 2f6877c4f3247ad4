"""``python -m microlib_kernel.papermill_runner ...``: papermill's command line, started faster.

Importing papermill imports nbformat, which imports jsonschema, which eagerly imports
``rfc3987_syntax`` when it is installed (jupyter_events pulls it in). That module
builds ~35 Lark parsers at import time: about 1.2 s of a deployment's cold start, for a
format checker (``iri``) no notebook schema uses (jsonschema issue #1428). This process
only runs papermill, so it tells Python the module is absent; jsonschema then skips
that checker. Nothing else changes; other processes are untouched.
"""

from __future__ import annotations

import sys


def main() -> None:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from papermill.cli import papermill

    papermill(prog_name="papermill")


if __name__ == "__main__":
    main()
