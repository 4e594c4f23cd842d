"""What the page runs once Python and numpy are up.

1. A self-check: one WGSL kernel on numpy arrays, compared with numpy (`run_axpy`):

    x, y (numpy, wasm heap) --view--> writeBuffer --axpy.wgsl--> out --mapAsync--> numpy

2. The demo: all-MiniLM-L6-v2 loaded onto the GPU (`load_model`, progress posted to the
   page), then semantic search over the page's sentences (`search`).

3. A corpus searched as you type (`open_corpus`, `corpus_search`; pybridge.corpus): the
   docstrings of Python's standard library, embedded on the GPU once, kept in the browser.

4. Python at the keyboard (`run_snippet`): the page's editor runs what the presenter types.

5. The GPU timeline (`gpu_timeline`): every kernel of one forward pass, timed on the GPU.

6. The race (`race_tokens`, `race_round`): the same sentences through pybridge here and through
   ONNX Runtime Web in a worker of its own (web/race.js), given the token ids made here.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

import numpy as np

from pybridge.backend import Backend, default_backend
from pybridge.dispatch import grid_1d


async def axpy(backend: Backend, alpha: float, x: np.ndarray, y: np.ndarray,
               timings: dict[str, float] | None = None) -> np.ndarray:
    """alpha * x + y on the GPU (float32). One CPU copy per input up, one for the result down."""
    if x.dtype != np.float32 or y.dtype != np.float32 or x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"axpy takes two 1-D float32 arrays of one length, got "
                         f"{x.dtype}{x.shape} and {y.dtype}{y.shape}")
    n = x.size
    params = np.zeros(4, dtype=np.uint32)  # Params {n: u32, alpha: f32}, padded to 16 bytes
    params[0] = n
    params[1:2].view(np.float32)[0] = alpha
    t0 = time.perf_counter()
    tensors = [await backend.upload(x, label="x"), await backend.upload(y, label="y"),
               await backend.allocate((n,), np.float32, label="out")]
    try:
        t1 = time.perf_counter()
        await backend.dispatch("axpy", [tensors[0], tensors[1], params, tensors[2]], grid_1d(n))
        await backend.sync()
        t2 = time.perf_counter()
        out = await tensors[2].numpy()  # (n,)
        t3 = time.perf_counter()
    finally:
        for t in tensors:
            t.free()
    if timings is not None:
        timings.update(upload=(t1 - t0) * 1e3, dispatch=(t2 - t1) * 1e3, readback=(t3 - t2) * 1e3)
    return out


async def run_axpy(n: int = 1 << 20, alpha: float = 2.5, seed: int = 0) -> dict[str, Any]:
    """The page's demo: axpy on n random float32 values, compared with numpy."""
    t0 = time.perf_counter()
    backend = await default_backend()
    timings = {"device": (time.perf_counter() - t0) * 1e3}
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n, dtype=np.float32)  # (n,)
    y = rng.standard_normal(n, dtype=np.float32)  # (n,)
    out = await axpy(backend, alpha, x, y, timings)
    expected = alpha * x + y
    return {
        "kernel": "axpy",
        "n": n,
        "alpha": alpha,
        "head": [round(float(v), 6) for v in out[:4]],
        "expectedHead": [round(float(v), 6) for v in expected[:4]],
        "maxAbsError": float(np.max(np.abs(out - expected))),
        "ok": bool(np.allclose(out, expected, rtol=1e-6, atol=1e-6)),
        "timingsMs": {k: round(v, 3) for k, v in timings.items()},
        "gpu": backend.describe(),
    }


# --- the semantic-search demo: MiniLM in the page ---------------------------------------------
_model = None
_loaded_from: list[str] = ["/models/all-MiniLM-L6-v2/", "float16"]  # (url, dtype) of the last load


def _post(message: dict[str, Any]) -> None:
    """Send a message from the worker's Python to the page."""
    import js
    from pyodide.ffi import to_js

    js.postMessage(to_js(message, dict_converter=js.Object.fromEntries))


async def load_model(url: str = "/models/all-MiniLM-L6-v2/", dtype: str = "float16") -> dict[str, Any]:
    """Load MiniLM for the page, posting {"type": "model-progress", done, total} while the
    weights stream and its pipelines compile, warm it up with one sentence, and return what
    was measured (ms): loadMs, the weights on the GPU, and compileMs, every pipeline
    compiled, both from the start of the load (they overlap); readyMs, the load returned
    (both done); warmupMs (= firstEmbedMs), the first forward pass alone, after that (it
    builds its shape's plan: buffers and bind groups, no compile)."""
    from pybridge.minilm import MiniLM

    global _model
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 0.05 or done == total:
            last[0] = now
            _post({"type": "model-progress", "done": done, "total": total})

    stages: dict[str, float] = {}
    model = await MiniLM.load(url, dtype=dtype, progress=progress, timings=stages)
    t1 = time.perf_counter()
    try:
        await model.embed(["warm up"])
    except BaseException:
        model.free()
        raise
    t2 = time.perf_counter()
    old, _model = _model, model  # searches keep using the old model until this one is ready
    _loaded_from[:] = [url, dtype]  # what a reload after a lost device loads again
    if old is not None:
        old.free()
    warmup = (t2 - t1) * 1e3
    return {"dtype": dtype, "loadMs": stages["weights"], "compileMs": stages["pipelines"],
            "readyMs": (t1 - t0) * 1e3, "warmupMs": warmup, "firstEmbedMs": warmup,
            "layers": model.layers, "hidden": model.hidden}


_reloading: Any = None  # the one reload in progress after a lost device (an asyncio.Task)


async def _reload_after_loss(lost: Any) -> None:
    """Load the model again on a new device, once for all the searches that found the device
    lost: the first starts the reload, the others wait for it. A failed reload raises to each
    of them, and the next search tries again."""
    global _reloading
    import asyncio

    if _model is not lost:  # another search already replaced it
        return
    if _reloading is None:
        _post({"type": "model-recovering"})
        _reloading = asyncio.ensure_future(load_model(*_loaded_from))
    task = _reloading
    try:
        await asyncio.shield(task)
    finally:
        if _reloading is task and task.done():
            _reloading = None


def unload_model() -> None:
    """Free the demo model's GPU buffers; searches then raise until a load. The page calls it
    when the kernel self-check failed: the model loads beside it, on kernels not to be
    trusted."""
    global _model
    model, _model = _model, None
    if model is not None:
        model.free()


SEARCH_PATHS = ("zero-copy", "naive")


async def search(query: str, sentences: list[str], path: str = "zero-copy") -> dict[str, Any]:
    """Rank `sentences` by cosine similarity to `query` (embeddings are unit vectors). If the
    GPU was lost (a driver reset, another tab taking it), the model is loaded again on a new
    device and the search answered; `recovered` then says what happened. `path`: how the
    bytes move, "zero-copy" (numpy's memory viewed, one copy each way) or "naive" (the
    labelled baseline: tobytes, to_js, ...), for this search only (pybridge.backend.using_paths:
    other work goes on as it was); "copies" lists this search's copies, per direction and path
    (pybridge.count_copies(task=True))."""
    import pybridge
    from pybridge.backend import using_paths

    if path not in SEARCH_PATHS:
        raise ValueError(f"path must be one of {', '.join(SEARCH_PATHS)}, got {path!r}")
    if _model is None:
        raise RuntimeError("the model is not loaded yet")
    # this search's own paths and copies: other tasks (a corpus search, the editor) keep
    # theirs and are not counted
    with using_paths(*(("naive", "naive") if path == "naive" else (None, None))), \
            pybridge.count_copies(task=True) as copies:
        result = await _search(query, sentences)
    return {**result, "path": path, "copies": copies.as_dict()}


async def _search(query: str, sentences: list[str]) -> dict[str, Any]:
    from pybridge.errors import DeviceLost, UseAfterFree

    texts = [query, *sentences]
    timings: dict[str, float] = {}
    recovered = None
    model = _model
    t0 = time.perf_counter()
    try:
        vectors = await model.embed(texts, batch_size=32, timings=timings)  # (1 + n, 384)
    except (DeviceLost, UseAfterFree) as e:
        if isinstance(e, UseAfterFree) and model is _model:
            raise  # not a model a reload replaced: a real error
        if isinstance(e, DeviceLost):
            recovered = "the GPU device was lost; the model was loaded again on a new one"
        await _reload_after_loss(model)  # default_backend() makes the new device
        model, timings = _model, {}
        t0 = time.perf_counter()
        vectors = await model.embed(texts, batch_size=32, timings=timings)
    total = (time.perf_counter() - t0) * 1e3
    scores = vectors[1:] @ vectors[0]  # (n,)
    order = np.argsort(-scores)
    return {
        "ranked": [{"text": sentences[i], "score": float(scores[i])} for i in order],
        "timingsMs": {k: round(v, 1) for k, v in timings.items()},
        "totalMs": round(total, 1),
        "tokens": model.last_tokens,
        "recovered": recovered,
    }


_corpus = None  # pybridge.corpus.Corpus, once opened
_opening: Any = None  # (args, asyncio.Task) of the open in progress


async def open_corpus(url: str = "/corpus/stdlib-docstrings.json", limit: int | None = None,
                      embed: bool = True) -> dict[str, Any]:
    """Open the page's corpus with the loaded model: its vectors read from the browser's
    storage where kept, else (`embed`) embedded on the GPU, posting {"type":
    "corpus-progress", done, total, perSecond} as it goes, and kept. A second call while one
    runs waits for it (the same arguments) or is refused. Returns {"how": "kept" | "embedded"
    | "none" (not kept, embed false), "why", "sentences", "ms", "perSecond"}."""
    import asyncio

    from pybridge import corpus as corpus_mod

    global _corpus, _opening
    if _model is None:
        raise RuntimeError("the model is not loaded yet")
    args = [url, limit, embed]
    if _opening is not None and not _opening[1].done():
        if _opening[0] != args:
            raise RuntimeError("the corpus is being opened already (another slice); wait for it")
        return await asyncio.shield(_opening[1])

    async def run() -> dict[str, Any]:
        global _corpus
        last = [0.0]

        def progress(done: int, total: int, per_second: float) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.1 or done == total:
                last[0] = now
                _post({"type": "corpus-progress", "done": done, "total": total,
                       "perSecond": per_second})

        opened = await _with_reload(lambda model: corpus_mod.open_corpus(
            model, url, limit, embed, progress))
        if opened.how != "none":
            _corpus = opened
        return {"how": opened.how, "why": opened.why, "sentences": len(opened.texts),
                "ms": round(opened.ms, 1), "perSecond": opened.per_second}

    _opening = (args, asyncio.ensure_future(run()))
    return await asyncio.shield(_opening[1])


async def _with_reload(work: Callable[[Any], Awaitable[Any]]) -> Any:
    """`await work(model)` with the loaded model; where the GPU was lost meanwhile (or a
    reload after a loss freed the model), once more with the model loaded again on a new
    device, as `search` does."""
    from pybridge.errors import DeviceLost, UseAfterFree

    model = _model
    try:
        return await work(model)
    except (DeviceLost, UseAfterFree) as e:
        if isinstance(e, UseAfterFree) and model is _model:
            raise  # not a model a reload replaced: a real error
        await _reload_after_loss(model)
        if _model is None:  # unloaded meanwhile (a failed self-check), not lost
            raise RuntimeError("the model was unloaded (the kernel self-check failed)") from None
        return await work(_model)


async def corpus_search(query: str, k: int = 8) -> dict[str, Any]:
    """The k sentences of the open corpus nearest `query`: {"ranked": [{where, text, score}],
    "embedMs" (the query, one forward pass), "rankMs" (every row scored), "sentences"}."""
    if _corpus is None:
        raise RuntimeError("no corpus is open yet (open_corpus)")
    if _model is None or _model.sha256 != _corpus.model_sha256:
        raise RuntimeError("the corpus was embedded by another model than the one loaded now; "
                           "open it again (open_corpus)")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query must be a non-empty string")
    corpus = _corpus
    t0 = time.perf_counter()
    q = (await _with_reload(lambda model: model.embed([query])))[0]  # its vectors are numpy's
    t1 = time.perf_counter()
    top = corpus.search(q, k)
    t2 = time.perf_counter()
    return {"ranked": [{"where": corpus.where[i], "text": corpus.texts[i], "score": score}
                       for i, score in top],
            "embedMs": round((t1 - t0) * 1e3, 1), "rankMs": round((t2 - t1) * 1e3, 2),
            "sentences": len(corpus.texts)}


_snippet_globals: dict[str, Any] = {}  # the editor's namespace, kept between runs
_snippet_lock_: Any = None


def _snippet_lock() -> Any:
    import asyncio

    global _snippet_lock_
    if _snippet_lock_ is None:
        _snippet_lock_ = asyncio.Lock()
    return _snippet_lock_
SNIPPET_TEXT_LIMIT = 20_000  # characters of output and of the value's repr shown


async def run_snippet(code: str) -> dict[str, Any]:
    """Run the page editor's Python (top-level `await` allowed; the namespace is kept between
    runs) and say what happened: {"ok", "value" (the last expression's repr, or None),
    "stdout" (what it printed, and anything else printed meanwhile), "error" (a Python
    traceback of the snippet's own lines, or None), "ms", "copies": [{direction, path,
    copies, bytes}] (the snippet's own: pybridge.count_copies(task=True))}. An error never
    escapes: it is the answer. Snippets run one at a time."""
    import contextlib
    import io
    import traceback

    from pyodide.code import eval_code_async

    import linecache

    from pybridge.accounting import count_copies

    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    _snippet_globals.setdefault("__name__", "__main__")
    out = io.StringIO()
    value, error = None, None
    # one snippet at a time: sys.stdout is the worker's, and overlapping redirects would leave
    # it pointing at a finished snippet's buffer
    async with _snippet_lock():
        # the traceback's source lines (the last run's text: an earlier run's function shows
        # the line numbers of its own text)
        linecache.cache["<editor>"] = (len(code), None, code.splitlines(True), "<editor>")
        t0 = time.perf_counter()
        with count_copies(task=True) as counted:  # this snippet's copies, not other tasks'
            try:
                with contextlib.redirect_stdout(out):
                    result = await eval_code_async(code, globals=_snippet_globals, filename="<editor>")
                value = None if result is None else repr(result)
            except BaseException as e:  # noqa: BLE001 (SystemExit too: shown; the worker goes on)
                frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<editor>"]
                error = "".join((["Traceback (most recent call last):\n"] if frames else [])
                                + traceback.format_list(frames) + traceback.format_exception_only(e))
        ms = (time.perf_counter() - t0) * 1e3
    copies = [{"direction": d, "path": p, **n} for d, paths in counted.as_dict().items()
              for p, n in paths.items()]
    return {"ok": error is None, "value": _clip(value), "stdout": _clip(out.getvalue()),
            "error": _clip(error), "ms": round(ms, 1), "copies": copies}


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= SNIPPET_TEXT_LIMIT:
        return text
    return text[:SNIPPET_TEXT_LIMIT] + f"\n... ({len(text) - SNIPPET_TEXT_LIMIT} more characters)"


async def gpu_timeline(sentences: list[str]) -> dict[str, Any]:
    """Every dispatch of one forward pass of `sentences` (one batch), timed by the GPU's own
    timestamps (MiniLM.profile): {"available": True, "steps": [[role, kernel, µs], ...] in
    order, "layers", "sum_us" (each timed alone), "whole_us" (the pass as a search runs it),
    "shape": [B, T]}, or {"available": False, "why"} where the device cannot time them (no
    `timestamp-query`; the CPU backend)."""
    if _model is None:
        raise RuntimeError("the model is not loaded yet")
    if not isinstance(sentences, list) or not sentences or not all(isinstance(x, str) for x in sentences):
        raise ValueError("sentences must be a non-empty list of strings")
    from pybridge.cpu import CpuBackend

    model = _model
    if isinstance(model.backend, CpuBackend):
        return {"available": False, "why": "the kernels run on numpy here (no GPU, no GPU timestamps)"}
    if "timestamp-query" not in model.backend.features:
        return {"available": False, "why": "this GPU device has no 'timestamp-query' feature "
                "(the browser or the adapter does not offer it), so its kernels cannot be timed"}
    r = await _with_reload(lambda m: m.profile(sentences))  # a lost GPU: loaded again
    return {"available": True, "steps": r["steps"], "layers": model.layers,
            "sum_us": r["sum_us"], "whole_us": r["whole_us"], "shape": r["shape"]}


RACE_MAX_SENTENCES = 256


def _race_texts(sentences: Any) -> list[str]:
    if _model is None:
        raise RuntimeError("the model is not loaded yet")
    if (not isinstance(sentences, list) or not sentences
            or not all(isinstance(x, str) for x in sentences)):
        raise ValueError("sentences must be a non-empty list of strings")
    if len(sentences) > RACE_MAX_SENTENCES:
        raise ValueError(f"the race takes at most {RACE_MAX_SENTENCES} sentences, got "
                         f"{len(sentences)}")
    return sentences


def race_tokens(sentences: list[str]) -> dict[str, Any]:
    """The token ids both runtimes are given, as pybridge's forward pass gets them (one batch,
    padded as the loaded model pads): {"ids": B*T ids, row-major, "lengths": B real lengths
    (the attention mask), "shape": [B, T], "dtype": the loaded weights' dtype, "agreeAt": the
    least cosine per sentence that counts as the same answer with those weights (the model
    tests' MIN_COSINE)}."""
    from pybridge.checks.selftest import MIN_COSINE

    texts = _race_texts(sentences)
    model = _model
    batch = model.tokenizer.encode_batch(texts, model.max_length, model.pad_tokens_to,
                                         caller="race_tokens")
    return {"ids": batch.ids.reshape(-1).tolist(), "lengths": batch.lengths.tolist(),
            "shape": list(batch.ids.shape), "dtype": model.dtype,
            "agreeAt": MIN_COSINE[model.dtype]}


async def race_round(sentences: list[str]) -> dict[str, Any]:
    """pybridge's lap of the race: `sentences` in, their embeddings out (tokenizing included),
    as one batch, on the zero-copy path whatever the default paths are: {"ms", "tokenizeMs",
    "vectors": B*384 floats, row-major, "shape": [B, 384], "copies": the lap's own (as
    `search` lists them)}. The vectors are a Python list: one more copy, after the timed lap
    and outside the counted data path, for the page to compare both runtimes' answers in JS.
    A lost GPU loads the model again and runs the lap once more."""
    import pybridge
    from pybridge.backend import using_paths

    texts = _race_texts(sentences)
    laps: dict[str, float] = {}

    async def lap(model: Any) -> np.ndarray:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vectors = await model.embed(texts, batch_size=len(texts), timings=timings)
        laps.update(ms=(time.perf_counter() - t0) * 1e3, tokenizeMs=timings.get("tokenize", 0.0))
        return vectors

    with using_paths(None, None), pybridge.count_copies(task=True) as copies:
        vectors = await _with_reload(lap)  # (B, 384)
    return {"ms": laps["ms"], "tokenizeMs": laps["tokenizeMs"],
            "vectors": vectors.reshape(-1).tolist(), "shape": list(vectors.shape),
            "copies": copies.as_dict()}
