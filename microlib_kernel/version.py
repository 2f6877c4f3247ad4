"""The package version, in a module of its own.

Anything may import it (the HTTP layer's ``/info`` and OpenAPI document, the Jupyter
server extension, the notebook's host registration) without importing the package
root, whose lazy names reach the host and the notebook. Keep it equal to
``[project] version`` in pyproject.toml (``tests/unit/test_layout.py`` checks).
"""

from __future__ import annotations

__version__ = "0.1.0"
