"""The page's corpus: the file tools/corpus.py made from the stdlib zip the page serves, and
pybridge.corpus (slice, parse, search, open natively) against sentence-transformers."""

from __future__ import annotations

import ast
import json
import random
import sys

import numpy as np
import pytest

from pybridge import corpus
from pybridge.checks.selftest import MIN_COSINE
from pybridge.minilm import MiniLM
from tests.reference import MODEL_DIR, cosine, need, st_embeddings
from tools.assets import PYODIDE_VERSION, SITE
from tools.corpus import MAX_CHARS, MIN_CHARS, OUT as CORPUS, build, write

ZIP = SITE / "pyodide" / PYODIDE_VERSION / "python_stdlib.zip"
SERVED = SITE / "corpus" / "stdlib-docstrings.json"


def find(tree: ast.Module, dotted: list[str]):
    """The class or function named by `dotted` below the module, by name (not by the
    builder's walk)."""
    node = tree
    for name in dotted:
        node = next(n for n in node.body if isinstance(
            n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name)
    return node


def test_the_corpus_is_the_stdlib_zips_docstrings(tmp_path):
    need("the vendored Pyodide", ZIP.exists() and SERVED.exists())
    assert SERVED.read_bytes() == CORPUS.read_bytes()  # set-up serves the committed file
    committed = json.loads(CORPUS.read_bytes())
    if sys.version_info >= (3, 12):  # made from the zip the page serves, deterministically
        assert build(ZIP) == committed
    else:  # 3.11's parser cannot read the 3.12 stdlib: the tool refuses rather than skip files
        with pytest.raises(SystemExit, match="needs Python 3.12"):
            write(ZIP, tmp_path / "c.json")
    entries = committed["entries"]
    assert len(entries) > 3000
    texts = [t for _, t in entries]
    assert len(set(texts)) == len(texts)
    assert all(MIN_CHARS <= len(t) <= MAX_CHARS and t.isascii() and t == " ".join(t.split())
               for t in texts)
    assert not any(p.startswith("_") and p != "__future__" for w, _ in entries for p in w.split("."))
    assert ["json.dumps", "Serialize ``obj`` to a JSON formatted ``str``."] in entries
    assert any(w == "json.decoder.JSONDecoder.decode" for w, _ in entries)  # a method, qualified
    # modules only a 3.12 parser reads are in (a 3.11 build left them out silently)
    assert {"typing.Protocol", "traceback.walk_stack"} <= {w for w, _ in entries}
    # a sample, each found again by its name in the zip's source: its docstring's first
    # paragraph (sources this Python cannot parse are left to a 3.12+ run, above)
    import zipfile

    checked = 0
    with zipfile.ZipFile(ZIP) as z:
        names = set(z.namelist())
        for where, text in random.Random(5).sample(entries, 60):
            parts = where.split(".")
            for i in range(len(parts), 0, -1):  # the longest module path that is a file
                path = "/".join(parts[:i])
                file = next((f for f in (path + ".py", path + "/__init__.py") if f in names), None)
                if file:
                    break
            try:
                tree = ast.parse(z.read(file))
            except SyntaxError:
                continue
            doc = ast.get_docstring(find(tree, parts[i:]))
            assert " ".join(doc.split("\n\n")[0].split()) == text, where
            checked += 1
    assert checked >= 50


def test_a_slice_spreads_over_the_corpus():
    assert corpus.pick(10, None) == list(range(10)) and corpus.pick(10, 50) == list(range(10))
    assert corpus.pick(10, 1) == [0] and corpus.pick(10, 2) == [0, 9]
    rows = corpus.pick(3270, 8)
    assert len(rows) == 8 and rows[0] == 0 and rows[-1] == 3269 and rows == sorted(set(rows))
    for bad in (0, -3, 2.5, True, "8", float("nan")):
        with pytest.raises(ValueError, match="limit must be a positive integer or None"):
            corpus.pick(10, bad)


@pytest.mark.parametrize("data", [b"[]", b"{}", b'{"entries": []}', b'{"entries": [["a"]]}',
                                  b'{"entries": [["a", "  "]]}', b'{"entries": [["a", 3]]}',
                                  b"not json"])
def test_a_file_that_is_not_a_corpus_is_named(data):
    with pytest.raises(ValueError, match=r"/c\.json: not a corpus file .*accepted: JSON"):
        corpus.parse(data, "/c.json")


def test_search_is_a_full_ranking_by_cosine():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((500, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = corpus.Corpus(["w"] * 500, ["t"] * 500, v, None, "embedded", None, 0.0, None)
    q = v[17] + 0.1 * v[3]
    q /= np.linalg.norm(q)
    want = np.argsort(-(v.astype(np.float64) @ q))
    got = c.search(q, 10)
    assert [i for i, _ in got] == list(want[:10]) and got[0][0] == 17
    np.testing.assert_allclose([s for _, s in got], (v @ q)[want[:10]], rtol=1e-6)
    assert len(c.search(q, 10_000)) == 500
    with pytest.raises(ValueError, match="k must be a positive integer"):
        c.search(q, 0)
    # the kept head names the rows: another row, another head
    w = v.copy()
    w[499, 0] += 1e-3
    assert corpus.head(v) != corpus.head(w) and len(corpus.head(v)) == corpus.HEAD_BYTES


SENTENCES = [
    "Return the number of seconds since the epoch.",
    "Parse a date string and return a datetime object.",
    "Serialize an object to a JSON formatted string.",
    "Open a file and return a stream.",
    "Compute the SHA-256 digest of the data.",
    "Sort the list in place.",
    "Create a new thread and start it.",
]


async def test_open_corpus_embeds_like_sentence_transformers(backend, tmp_path, monkeypatch):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"entries": [[f"m.f{i}", s] for i, s in enumerate(SENTENCES)]}))
    monkeypatch.setattr(corpus, "EMBED_CHUNK", 3)
    seen = []
    model = await MiniLM.load(MODEL_DIR, dtype="float32", backend=backend)
    try:
        c = await corpus.open_corpus(model, str(path), progress=lambda *a: seen.append(a))
        sliced = await corpus.open_corpus(model, str(path), limit=3)
        none = await corpus.open_corpus(model, str(path), embed=False)
        q = (await model.embed(["when is it now, in seconds"]))[0]
    finally:
        model.free()
    assert c.how == "embedded" and c.why == "nothing is kept outside a browser"
    assert [(d, t) for d, t, _ in seen] == [(3, 7), (6, 7), (7, 7)] and all(r > 0 for *_, r in seen)
    assert c.texts == SENTENCES and c.where[1] == "m.f1" and c.vectors.shape == (7, 384)
    ref = st_embeddings(tmp_path / "st", SENTENCES + ["when is it now, in seconds"])
    assert cosine(c.vectors, ref[:7]).min() >= MIN_COSINE["float32"]
    want = list(np.argsort(-(ref[:7] @ ref[7])))
    assert [i for i, _ in c.search(q, 7)][:3] == want[:3]
    assert sliced.texts == [SENTENCES[0], SENTENCES[3], SENTENCES[6]]
    np.testing.assert_allclose(sliced.vectors, c.vectors[[0, 3, 6]], atol=1e-5)
    assert none.how == "none" and none.vectors is None and len(none.texts) == 7


def test_the_kept_name_changes_with_everything_that_changes_the_vectors(monkeypatch):
    from types import SimpleNamespace

    from pybridge.cpu import CpuBackend

    class OtherBackend:
        pass

    def model(**changes):
        fields = dict(manifest_sha256="m" * 64, sha256="w" * 64, dtype="float16", backend=CpuBackend("x"))
        return SimpleNamespace(**{**fields, **changes})

    base = corpus.kept_name("c" * 64, model(), [0, 5, 9])
    others = [
        corpus.kept_name("d" * 64, model(), [0, 5, 9]),  # another corpus file
        corpus.kept_name("c" * 64, model(), [0, 5, 8]),  # another slice
        corpus.kept_name("c" * 64, model(manifest_sha256="n" * 64), [0, 5, 9]),  # vocabulary, config
        corpus.kept_name("c" * 64, model(sha256="v" * 64), [0, 5, 9]),  # weights
        corpus.kept_name("c" * 64, model(dtype="float32"), [0, 5, 9]),
        corpus.kept_name("c" * 64, model(backend=OtherBackend()), [0, 5, 9]),
    ]
    monkeypatch.setattr(corpus, "code_sha256", lambda: "e" * 64)  # pybridge's code or kernels
    others.append(corpus.kept_name("c" * 64, model(), [0, 5, 9]))
    assert len({base, *others}) == 1 + len(others)
    monkeypatch.undo()
    assert base.endswith(".f32") and base == corpus.kept_name("c" * 64, model(), [0, 5, 9])


def test_the_code_hash_covers_the_package_files(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    pkg = tmp_path / "pybridge"
    shutil.copytree(Path(corpus.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "wgsl").mkdir(exist_ok=True)
    (pkg / "wgsl" / "k.wgsl").write_text("// a kernel")
    monkeypatch.setattr(corpus, "__file__", str(pkg / "corpus.py"))
    corpus.code_sha256.cache_clear()
    try:
        before = corpus.code_sha256()
        (pkg / "wgsl" / "k.wgsl").write_text("// a kernel, changed")
        corpus.code_sha256.cache_clear()
        changed = corpus.code_sha256()
        (pkg / "__pycache__").mkdir()
        (pkg / "__pycache__" / "x.pyc").write_bytes(b"compiled")  # bytecode is not code identity
        corpus.code_sha256.cache_clear()
        assert changed != before and corpus.code_sha256() == changed
    finally:
        monkeypatch.undo()
        corpus.code_sha256.cache_clear()
