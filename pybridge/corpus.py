"""A corpus searched as you type: sentences embedded once by MiniLM on the GPU, their vectors
kept in the browser's storage so that a reload searches at once.

    corpus = await open_corpus(model, "/corpus/stdlib-docstrings.json", limit=None,
                               progress=lambda done, total, per_second: ...)
    corpus.search(model_vector_of_the_query, k=8)    # [(row, score), ...] best first

The corpus file (data/, made by tools/corpus.py): {"entries": [[where, text], ...], ...}.
`limit` keeps that many entries spread evenly over the file (the tests embed a slice). The
vectors are kept in the origin private file system (web/bridge.js openKept, readKeptInto,
writeKeptFrom: read straight into a numpy array's memory and written from it, one copy each
way) under a name made of everything that changes them (kept_name: the corpus file, the
slice, the model's manifest and weights, the code, the backend): anything else, and they are
embedded again. A kept file holds a 64-byte head (MAGIC, rows, width, the rows' sha256) and
the float32 rows; one whose size, head or sha256 does not match is refused and embedded
again. One file is kept: another slice or model replaces it. Natively, and where the browser
has no such storage, nothing is kept (`why` says so).
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pybridge._env import IN_PYODIDE

MAGIC = b"PBKEPT01"
HEAD_BYTES = 64
EMBED_CHUNK = 64  # sentences per embed() call: the progress is posted after each


@dataclass
class Corpus:
    where: list[str]  # the dotted name each sentence documents
    texts: list[str]
    vectors: np.ndarray | None  # (n, hidden) float32, unit rows; None when not embedded
    model_sha256: str | None  # the weights that embedded them
    how: str  # "kept" (read from the browser's storage) | "embedded" | "none" (embed false)
    why: str | None  # why they were not read from storage, or not kept after embedding
    ms: float  # to read them, or to embed them
    per_second: float | None  # sentences embedded per second (None when read)

    def search(self, query: np.ndarray, k: int = 8) -> list[tuple[int, float]]:
        """The k rows nearest `query` (a unit vector) by cosine similarity, best first."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        scores = self.vectors @ np.asarray(query, np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top]


def parse(data: bytes, url: str) -> tuple[list[str], list[str]]:
    """(where, texts) of a corpus file; a file of another shape is named with what is accepted."""
    try:
        entries = json.loads(data)["entries"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("no entries")
        for e in entries:
            if not (isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
                    and e[1].strip()):
                raise ValueError(f"entry {e!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{url}: not a corpus file ({type(e).__name__}: {e}); accepted: JSON "
                         '{"entries": [[where, text], ...]} with at least one entry') from None
    return [e[0] for e in entries], [e[1] for e in entries]


def pick(total: int, limit: int | None) -> list[int]:
    """The rows a `limit` keeps: all of them (None), else that many spread evenly."""
    if limit is None:
        return list(range(total))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if limit >= total:
        return list(range(total))
    return sorted({round(i * (total - 1) / max(limit - 1, 1)) for i in range(limit)})


@functools.cache
def code_sha256() -> str:
    """The sha256 of pybridge's own files as installed (its Python and, in the wheel, its
    kernels): with the model's files, what turns a text into its vector."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def kept_name(corpus_sha256: str, model: Any, rows: list[int]) -> str:
    """The kept file's name: everything that changes the vectors. The corpus file, the rows
    taken, the model (its manifest: configuration and vocabulary; its weights and dtype), the
    code (pybridge's files, kernels included) and the kind of backend."""
    key = json.dumps([corpus_sha256, hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest(),
                      model.manifest_sha256, model.sha256, model.dtype, code_sha256(),
                      type(model.backend).__name__])
    return hashlib.sha256(key.encode()).hexdigest()[:40] + ".f32"


def head(vectors: np.ndarray) -> bytes:
    rows, width = vectors.shape
    return (MAGIC + struct.pack("<II", rows, width) + hashlib.sha256(vectors).digest()).ljust(
        HEAD_BYTES, b"\0")


async def _kept(name: str, vectors: np.ndarray, write: bool) -> str | None:
    """The kept file `name`, through web/bridge.js: read into `vectors` (write False) or
    written from them. None when done; else "unavailable" (no such storage here), "missing"
    (nothing kept under that name), "refused" (size, head or sha256 do not match), "outside"
    (not in a browser) or why the storage failed."""
    if not IN_PYODIDE:
        return "outside"
    import js
    from pyodide.ffi import to_js

    from pybridge.browser import _js

    *_, bridge = _js()
    try:
        access = await bridge.openKept(name, write)
        if access in ("unavailable", "missing"):
            return access
        try:
            if write:
                bridge.writeKeptFrom(access, to_js(head(vectors)), vectors)
                return None
            got = js.Uint8Array.new(HEAD_BYTES)
            whole = bridge.readKeptInto(access, got, vectors)
        finally:
            access.close()
    except Exception as e:  # a JsException: the storage refused (another tab holds the file)
        return f"the browser's storage failed ({getattr(e, 'message', e)})"
    return None if whole and got.to_bytes() == head(vectors) else "refused"


READ_WHY = {
    "outside": "nothing is kept outside a browser",
    "unavailable": "this browser keeps no files for a page here (no origin private file system)",
    "missing": "none kept yet for this corpus and model",
    "refused": "the kept vectors were refused (their size, head or sha256 does not match)",
}


async def open_corpus(model: Any, url: str, limit: int | None = None, embed: bool = True,
                      progress: Callable[[int, int, float], Any] | None = None) -> Corpus:
    """The corpus at `url` with its vectors: read from storage where kept for this corpus and
    model, else embedded by `model` (`embed`; else none: how "none"), EMBED_CHUNK sentences at a time,
    calling progress(done, total, sentences_per_second) after each, then kept."""
    from pybridge.minilm import _read_text

    base, _, file = url.rpartition("/")
    data = (await _read_text(base + "/", file)).encode()
    where, texts = parse(data, url)
    rows = pick(len(texts), limit)
    where, texts = [where[i] for i in rows], [texts[i] for i in rows]
    name = kept_name(hashlib.sha256(data).hexdigest(), model, rows)
    vectors = np.empty((len(texts), model.hidden), np.float32)
    t0 = time.perf_counter()
    why = await _kept(name, vectors, write=False)
    why = READ_WHY.get(why, why)
    if why is None:
        return Corpus(where, texts, vectors, model.sha256, "kept", None,
                      (time.perf_counter() - t0) * 1e3, None)
    if not embed:
        return Corpus(where, texts, None, model.sha256, "none", why, 0.0, None)
    t0 = time.perf_counter()
    rate = 0.0
    for i in range(0, len(texts), EMBED_CHUNK):
        vectors[i:i + EMBED_CHUNK] = await model.embed(texts[i:i + EMBED_CHUNK], batch_size=32)
        done = min(i + EMBED_CHUNK, len(texts))
        rate = done / max(time.perf_counter() - t0, 1e-9)
        if progress is not None:
            progress(done, len(texts), rate)
    ms = (time.perf_counter() - t0) * 1e3
    not_kept = await _kept(name, vectors, write=True) if IN_PYODIDE else None
    if not_kept is not None:
        not_kept = "not kept: " + ("this browser keeps no files for a page here"
                                   if not_kept == "unavailable" else not_kept)
    return Corpus(where, texts, vectors, model.sha256, "embedded",
                  f"{why}; {not_kept}" if not_kept else why, ms, rate)
