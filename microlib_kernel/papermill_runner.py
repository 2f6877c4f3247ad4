"""``python -m microlib_kernel.papermill_runner``: papermill, started faster, for deployments.

* Importing papermill imports nbformat, which imports jsonschema, which eagerly imports
  ``rfc3987_syntax`` when it is installed (jupyter_events pulls it in). That module
  builds ~35 Lark parsers at import time: about 1.2 s of a deployment's cold start, for
  a format checker (``iri``) no notebook schema uses (jsonschema issue #1428). This
  process only runs papermill, so it tells Python the module is absent; jsonschema then
  skips that checker. The same holds for the other optional format checkers'
  libraries (``isoduration`` alone imports ``arrow``: ~45 ms): nbformat never checks
  formats, so none of them is needed here.
* The kernel is started before papermill is imported, so that the kernel's own start
  (Python, ipykernel, the extension: most of a second) overlaps papermill's import
  instead of following it; papermill then runs the notebook on that kernel.
* Once the last cell ran, the kernel is stopped at once instead of politely (which waits
  for the kernel's own shutdown, about a second): the deployment's work is done and
  recorded by then, and the kernel holds no data.

Arguments: ``INPUT OUTPUT KERNEL PARAMETERS_JSON CWD START_TIMEOUT PROGRESS(0|1)``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

# Optional jsonschema format-checker libraries; a None in sys.modules makes their import
# fail, and jsonschema then leaves those formats unchecked.
_UNUSED_FORMAT_CHECKERS = (
    "rfc3987_syntax",
    "isoduration",
    "rfc3986_validator",
    "rfc3339_validator",
    "webcolors",
    "uri_template",
    "fqdn",
)


def main(argv: list[str] | None = None) -> int:
    for name in _UNUSED_FORMAT_CHECKERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    args = sys.argv[1:] if argv is None else argv
    source, output, kernel, parameters, cwd, start_timeout, progress = args
    km = _start_kernel(kernel, cwd)
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError

        try:
            papermill.execute_notebook(
                source,
                output,
                parameters=json.loads(parameters),
                kernel_name=kernel,
                cwd=cwd,
                start_timeout=int(start_timeout),
                progress_bar=progress == "1",
                km=km,
            )
        except PapermillExecutionError as exc:
            # The executed notebook holds the failing cell and its error; say it in one line.
            print(f"papermill: {exc.ename}: {exc.evalue}", file=sys.stderr)
            return 1
        return 0
    finally:
        # papermill leaves a kernel it did not start running: stop it at once (the
        # deployment's work is done and recorded; the kernel holds no data).
        km.shutdown_kernel(now=True)


def _start_kernel(kernel: str, cwd: str) -> Any:
    """Launch the deployment's kernel (it boots while papermill is imported)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel)
    # papermill's notebook client talks to the kernel with an asyncio client.
    km.client_class = "jupyter_client.asynchronous.AsyncKernelClient"
    # As nbclient does for kernels it starts: no IPython history database.
    km.start_kernel(cwd=cwd, extra_arguments=["--HistoryManager.hist_file=:memory:"])
    return km


if __name__ == "__main__":
    sys.exit(main())
