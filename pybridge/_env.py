"""Where pybridge runs: Pyodide in a browser worker, or plain CPython (tests, tools)."""

import sys

IN_PYODIDE: bool = sys.platform == "emscripten"


def require_browser(what: str) -> None:
    """Raise a clear error when a browser-only operation is called from plain CPython."""
    if not IN_PYODIDE:
        raise RuntimeError(
            f"{what} needs Pyodide in a browser (navigator.gpu); this is CPython {sys.version.split()[0]}"
        )
