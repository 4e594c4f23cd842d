"""The page's corpus: the first paragraph of every public docstring in Python's standard
library, read from the python_stdlib.zip the page already serves (Pyodide's, pinned by
sha256 in tools/assets.py; the Python Software Foundation License).

    python3.12 tools/corpus.py [ZIP]      (re-make data/stdlib-docstrings.json)

The file is committed (data/stdlib-docstrings.json, 0.31 MB) and set-up copies it into the
served site (tools/assets.py): the zip holds CPython 3.12's sources, which only a 3.12+
parser reads (3.11's refuses typing.py and traceback.py), and set-up may run on 3.9-3.11.
This tool therefore refuses an older Python, and any source it cannot parse, rather than
leave files out. {"source", "license", "entries": [[where, text], ...]} with `where` the
dotted name the docstring belongs to (module, class, function or method) and `text` its
first paragraph on one line. Only CPython's own parser reads the sources (ast, never an
import); tests, private modules and names, duplicates, non-ASCII text and paragraphs outside
24-160 characters are left out. Deterministic: the same zip gives the same bytes.
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

MIN_CHARS, MAX_CHARS = 24, 160


def first_paragraph(doc: str) -> str:
    return " ".join(doc.split("\n\n")[0].split())


def docstrings(module: str, tree: ast.Module):
    """(dotted name, docstring) of the module and of its public classes, functions and
    methods, in source order."""
    yield module, ast.get_docstring(tree)

    def walk(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.name.startswith("_"):
                    continue
                name = f"{prefix}.{child.name}"
                yield name, ast.get_docstring(child)
                if isinstance(child, ast.ClassDef):
                    yield from walk(child, name)

    yield from walk(tree, module)


def build(zip_path: Path) -> dict:
    entries, seen = [], set()
    with zipfile.ZipFile(zip_path) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if not name.endswith(".py") or any(p.startswith(("test", "idle")) for p in parts):
                continue
            tree = ast.parse(z.read(name), name)  # a SyntaxError names the file: no file is left out
            module = name[:-3].replace("/", ".").removesuffix(".__init__")
            if any(p.startswith("_") for p in module.split(".") if p != "__future__"):
                continue  # private modules (_pydecimal, email._parseaddr, Pyodide's _pyodide)
            for where, doc in docstrings(module, tree):
                text = first_paragraph(doc or "")
                if (MIN_CHARS <= len(text) <= MAX_CHARS and text.isascii() and " " in text
                        and text not in seen):
                    seen.add(text)
                    entries.append([where, text])
    return {"source": f"docstrings of Python's standard library ({zip_path.name})",
            "license": "Python Software Foundation License", "entries": entries}


def write(zip_path: Path, out: Path) -> int:
    if sys.version_info < (3, 12):
        raise SystemExit(f"tools/corpus.py needs Python 3.12+ to parse the 3.12 stdlib (this is "
                         f"{sys.version.split()[0]}); set-up copies the committed {OUT.name}")
    data = (json.dumps(build(zip_path), indent=0, ensure_ascii=True) + "\n").encode()
    if not out.is_file() or out.read_bytes() != data:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return len(json.loads(data)["entries"])


ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "stdlib-docstrings.json"

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from tools.assets import PYODIDE_VERSION, SITE

    zip_path = Path(sys.argv[1]) if len(sys.argv) > 1 else SITE / "pyodide" / PYODIDE_VERSION / "python_stdlib.zip"
    print(f"[corpus] {write(zip_path, OUT)} sentences -> {OUT.relative_to(ROOT)}")
