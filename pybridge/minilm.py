"""all-MiniLM-L6-v2 sentence embeddings on the GPU: a 6-layer BERT, mean pooling, L2 norm.

    model = await MiniLM.load("/models/all-MiniLM-L6-v2/", dtype="float16", progress=...)
    vectors = await model.embed(["a sentence", ...], batch_size=32)   # (N, 384) float32

Per batch: tokenize (Python) -> ONE call into the GPU API (web/bridge.js runPlan): ids and
lengths written from numpy's memory (2 small copies), the 44 dispatches of the forward pass
recorded into one compute pass, the pooled result copied to a MAP_READ buffer, one submit ->
one copy of the result straight into its rows. The forward pass is resolved once per batch
shape into a `Plan` (pipelines, bind groups, grids, uniforms) with its activation buffers;
a few recent shapes are kept. While the GPU runs batch i, Python tokenizes batch i+1.
Concurrent `embed` calls are safe: runs are ordered by the GPU queue and each reads back into
its own buffer; a shape's buffers are never freed while a run uses them.

Shapes (B sentences, T tokens, M = B*T rows, C = 384 hidden, 12 heads of 32):
    embed      ids (M,)                     -> x (M, C)          word + position + type, LN
    per layer  x @ Wqkv.T + b               -> qkv (M, 3C)
               attention(qkv, lengths)      -> ctx (M, C)
               ctx @ Wo.T + b               -> attn (M, C);  x1 = LN(attn + x)
               gelu(x1 @ Wi.T + b)          -> h (M, 4C)
               h @ Wo2.T + b                -> ffn (M, C);   x = LN(ffn + x1)
    pool       masked mean over T, L2 norm  -> (B, C)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pybridge._env import IN_PYODIDE
from pybridge.backend import Backend, GpuTensor, Plan, Step, default_backend, pipeline_key
from pybridge.dispatch import SPLITK_MAX_ROWS, grid_1d, matmul_plan, pack_params
from pybridge.errors import DownloadError, IntegrityError, UseAfterFree
from pybridge.tokenizer import WordPiece, check_texts
from pybridge.weights import load_safetensors

ATTENTION_ROWS = 64  # attention.wgsl's query rows per workgroup
KEEP_SHAPES = 2  # idle batch shapes whose activations and plan stay allocated
PAD_TOKENS_TO = 16  # on a GPU, batches are padded to a multiple of this many tokens, so real
                    # text of varied lengths reuses a few shapes' plans (padding is masked:
                    # exact). Not on a CPU implementation (SwiftShader, lavapipe), where the
                    # padded rows cost their full compute (8 x 12 tokens ran 1.15x slower)
MAX_BATCH = 65535  # attention's grid holds the batch in one dimension
# rows M = B*T at the edges of pybridge.dispatch.matmul_plan's ranges (matmul_rows up to 32
# rows, split-K up to SPLITK_MAX_ROWS, tiles beyond, bigger tiles as M grows): with the most
# rows a batch can have, one M of each range, for pipeline_keys (a unit test checks them)
_KEY_ROWS = (1, 32, 33, SPLITK_MAX_ROWS, SPLITK_MAX_ROWS + 1)
DTYPE_FILES = {"float32": "model-f32.safetensors", "float16": "model-f16.safetensors"}
CONFIG_KEYS = ("hidden_size", "num_heads", "num_layers", "intermediate_size", "max_seq_length",
               "layer_norm_eps")  # what MiniLM reads of its manifest's config


async def _read_text(base: str | Path, name: str, sha256: str | None = None) -> str:
    """A small text file of the model: fetched in the browser (the worker checks it against
    config.json's sha256 where listed), read from disk natively; checked against `sha256`
    when given. Errors name the file."""
    if not IN_PYODIDE:
        data = (Path(base) / name).read_bytes()
    else:
        import js
        from pyodide.ffi import JsException

        url = _join(base, name)
        try:
            resp = await js.fetch(url)
            if not resp.ok:
                raise FileNotFoundError(f"{url}: HTTP {resp.status}")
            data = (await resp.arrayBuffer()).to_bytes()
        except JsException as e:  # the worker knows what was wrong (not under Node)
            why = js.assetError(url) if hasattr(js, "assetError") else None
            raise DownloadError(f"{url}: {why or e.message}") from None
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityError(f"{_join(base, name)}: sha256 {hashlib.sha256(data).hexdigest()} "
                             f"does not match the manifest's {sha256} (truncated or corrupted)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{_join(base, name)}: not UTF-8 text ({e})") from None


def _join(base: str | Path, name: str) -> str | Path:
    """base/name: a URL in the browser, a path natively."""
    return str(base).rstrip("/") + "/" + name if IN_PYODIDE else Path(base) / name


class MiniLM:
    def __init__(self, backend: Backend, config: dict[str, Any], weights: dict[str, GpuTensor],
                 tokenizer: WordPiece, dtype: str) -> None:
        self.backend = backend
        self.config = config
        self.w = weights
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.hidden = config["hidden_size"]
        self.heads = config["num_heads"]
        self.layers = config["num_layers"]
        self.inner = config["intermediate_size"]
        self.max_length = config["max_seq_length"]
        self.eps = float(config["layer_norm_eps"])
        self._shapes: dict[tuple[int, int], _Shape] = {}  # (B, T) -> buffers + plan, LRU order
        self.pad_tokens_to = 1 if backend.is_cpu else PAD_TOKENS_TO
        self._freed = False
        self.last_tokens = 0  # tokens embedded by the last embed() call ([CLS]/[SEP] included)
        self.sha256: str | None = None  # the weights' (their manifest's), once loaded
        self.manifest_sha256: str | None = None  # the manifest's own: config, vocabulary, files
        self.subgroups = False  # split-K by subgroup shuffles: load() sets it where usable

    @classmethod
    async def load(cls, source: str | Path = "/models/all-MiniLM-L6-v2/", *,
                   dtype: str = "float32", backend: Backend | None = None,
                   progress: Callable[[int, int], Any] | None = None,
                   timings: dict[str, float] | None = None) -> "MiniLM":
        """Load the converted model (tools/convert_model.py) from a URL (browser) or folder
        (native). Weights stream into GPU buffers, checked against the manifest (browser:
        each 4 MiB block's sha256, or the whole file's in JS where a manifest from before
        the blocks lists none; native: the whole file's), while the pipelines of every
        forward pass are compiled (`pipeline_keys()`: in the browser all at once,
        asynchronously); it returns when both are done. Where either
        fails, the weights are freed (a failed compile is raised once the stream ended;
        the pipelines that did compile stay cached on the device, for a later load).
        `timings` (ms from this call): "weights" when the weights were on the GPU,
        "pipelines" when every pipeline was compiled."""
        started = time.perf_counter()
        if dtype not in DTYPE_FILES:
            raise ValueError(f"dtype {dtype!r} is not available; accepted: {', '.join(DTYPE_FILES)}")
        backend = backend or await default_backend()
        name = DTYPE_FILES[dtype]
        try:
            manifest_text = await _read_text(source, "manifest.json")
            manifest = json.loads(manifest_text)
            vocab_sha256 = manifest["files"]["vocab.txt"]["sha256"]
            config = manifest["config"]
            for key in CONFIG_KEYS:  # checked before any weight is streamed
                config[key]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{_join(source, 'manifest.json')}: not a model manifest of "
                             f"tools/convert_model.py ({type(e).__name__}: {e})") from None
        if not isinstance(manifest["files"].get(name), dict) or "sha256" not in manifest["files"][name]:
            raise ValueError(f"{_join(source, 'manifest.json')} lists no {name}: dtype {dtype!r} "
                             f"is not in this model; it has {', '.join(manifest['files'])}")
        tokenizer = WordPiece.from_vocab_text(await _read_text(source, "vocab.txt", vocab_sha256))
        t = timings if timings is not None else {}
        compiling = asyncio.ensure_future(cls._compile(backend, config, dtype, started, t))
        try:
            weights = await load_safetensors(_join(source, name), backend,
                                             sha256=manifest["files"][name]["sha256"],
                                             blocks=manifest["files"][name].get("blocks"),
                                             progress=progress)
        except BaseException:
            compiling.cancel()
            await asyncio.wait([compiling])  # its own error, if any, is not the one raised
            compiling.cancelled() or compiling.exception()
            raise
        t["weights"] = (time.perf_counter() - started) * 1e3
        try:
            subgroups = await compiling
        except BaseException:
            compiling.cancel()
            for w in weights.values():
                w.free()
            raise
        model = cls(backend, config, weights, tokenizer, dtype)
        model.subgroups = subgroups
        model.sha256 = manifest["files"][name]["sha256"]
        model.manifest_sha256 = hashlib.sha256(manifest_text.encode()).hexdigest()
        return model

    @classmethod
    async def _compile(cls, backend: Backend, config: dict[str, Any], dtype: str,
                       started: float, timings: dict[str, float]) -> bool:
        """Compile every pipeline a forward pass of any shape uses (for a model of `config`
        without its weights yet); returns whether split-K uses subgroup shuffles here."""
        ahead = cls(backend, config, defaultdict(lambda: None), None, dtype)  # no weights
        ahead.subgroups = await backend.subgroups_usable()
        await backend.compile_pipelines(ahead.pipeline_keys())
        timings["pipelines"] = (time.perf_counter() - started) * 1e3
        return ahead.subgroups

    def pipeline_keys(self, B: int | None = None, T: int | None = None
                      ) -> list[tuple[str, dict[str, Any]]]:
        """(op, constants) of each pipeline the forward pass of a (B, T) batch uses or, with
        no shape, that of any shape uses, as `backend.compile_pipelines` takes them. Read
        from `_forward` itself over placeholder tensors (no GPU work), so they cannot drift
        from what a plan compiles. Only the matmul kernels differ between shapes, and
        matmul_plan picks them by the rows M = B*T alone: one M from each of its ranges
        (_KEY_ROWS) stands for every shape."""
        if (B is None) != (T is None):
            raise ValueError(f"pipeline_keys takes both B and T or neither, got B={B}, T={T}")
        shapes = [(B, T)] if B is not None and T is not None else [
            (1, M) for M in (*_KEY_ROWS, MAX_BATCH * self.max_length)]  # (1, M): M rows
        placeholders: dict[str, Any] = defaultdict(lambda: None)
        keys: dict[tuple, tuple[str, dict[str, Any]]] = {}
        for b, t in shapes:
            for step in self._forward(placeholders, b, t):
                keys.setdefault(pipeline_key(step.op, step.constants),
                                (step.op, dict(step.constants or {})))
        return list(keys.values())

    def free(self) -> None:
        """Release the weights, activations and plans. A run already submitted finishes; a
        later `embed` raises UseAfterFree."""
        self._freed = True
        for t in self.w.values():
            t.free()
        for shape in self._shapes.values():
            shape.free()
        self._shapes.clear()

    async def _shape(self, B: int, T: int) -> "_Shape":
        """Activation tensors and the forward pass's plan for a (B, T) batch, taken for one run
        (`release()` it after): built once, kept while it is among the recent shapes."""
        key = (B, T)
        shape = self._shapes.pop(key, None)
        if shape is None:
            try:
                built = await self._build(B, T)
            except UseAfterFree:  # its weights freed while it was being built
                if self._freed:
                    raise UseAfterFree("embed: the model was freed; load it again") from None
                raise
            if self._freed:  # freed while this shape was being built: keep nothing of it
                built.free()
                raise UseAfterFree("embed: the model was freed; load it again")
            shape = self._shapes.pop(key, None)  # built meanwhile by a concurrent call?
            if shape is None:
                shape = built
            else:
                built.free()
        self._shapes[key] = shape  # most recently used last
        shape.users += 1
        self._evict()
        return shape

    def _evict(self) -> None:
        """Free the least recently used idle shapes beyond KEEP_SHAPES (never one in use)."""
        idle = [k for k, v in self._shapes.items() if v.users == 0]
        for key in idle[: max(0, len(idle) - KEEP_SHAPES)]:
            self._shapes.pop(key).free()

    async def _build(self, B: int, T: int) -> "_Shape":
        M, C = B * T, self.hidden
        shapes = {"x": (M, C), "x1": (M, C), "qkv": (M, 3 * C), "ctx": (M, C), "attn": (M, C),
                  "h": (M, self.inner), "ffn": (M, C), "pooled": (B, C)}
        acts: dict[str, GpuTensor] = {}
        try:
            for k, shape in shapes.items():
                acts[k] = await self.backend.allocate(shape, np.float32, label=k)
            acts["ids"] = await self.backend.allocate((M,), np.int32, label="ids")  # (M,)
            acts["lengths"] = await self.backend.allocate((B,), np.int32, label="lengths")  # (B,)
            plan = await self.backend.plan(self._forward(acts, B, T),
                                           inputs=[acts["ids"], acts["lengths"]],
                                           outputs=[acts["pooled"]],
                                           label=f"MiniLM forward {B}x{T}")
        except BaseException:
            for t in acts.values():
                t.free()
            raise
        return _Shape(self, acts, plan)

    def _linear(self, role: str, x: GpuTensor, name: str, out: GpuTensor, M: int, N: int,
                K: int, gelu: bool = False) -> Step:
        op, grid, constants = matmul_plan(M, N, K, self.dtype == "float16",
                                          "shader-f16" in self.backend.features,
                                          self.backend.is_cpu, self.subgroups)
        return Step(op, [x, self.w[name + ".weight"], self.w[name + ".bias"],
                         pack_params(M, N, K), out], grid, {"GELU": gelu, **constants}, role)

    def _forward(self, a: dict[str, GpuTensor], B: int, T: int) -> list[Step]:
        """The whole forward pass (embeddings, 6 layers, pooling): 2 + 7 x layers steps."""
        M, C, f16 = B * T, self.hidden, self.dtype == "float16"
        w = self.w
        ln = pack_params(M, C, self.eps)
        rows = grid_1d(M, 1)  # one workgroup per row, folded past 65535 rows
        steps = [Step("embed", [a["ids"], w["embeddings.word_embeddings.weight"],
                                w["embeddings.position_embeddings.weight"],
                                w["embeddings.token_type_embeddings.weight"],
                                w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                                pack_params(T, C, self.eps), a["x"]], rows, {"TABLE_F16": f16})]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            steps += [
                self._linear("qkv", a["x"], p + "attention.qkv", a["qkv"], M, 3 * C, C),
                Step("attention", [a["qkv"], a["lengths"],
                                   pack_params(T, C, self.heads, float(C // self.heads) ** -0.5),
                                   a["ctx"]],
                     (-(-T // ATTENTION_ROWS), self.heads, B), {"HEAD_DIM": C // self.heads}),
                self._linear("out", a["ctx"], p + "attention.output.dense", a["attn"], M, C, C),
                Step("layernorm", [a["attn"], a["x"], w[p + "attention.output.LayerNorm.weight"],
                                   w[p + "attention.output.LayerNorm.bias"], ln, a["x1"]], rows),
                self._linear("ffn1", a["x1"], p + "intermediate.dense", a["h"], M, self.inner, C,
                             gelu=True),
                self._linear("ffn2", a["h"], p + "output.dense", a["ffn"], M, C, self.inner),
                Step("layernorm", [a["ffn"], a["x1"], w[p + "output.LayerNorm.weight"],
                                   w[p + "output.LayerNorm.bias"], ln, a["x"]], rows),
            ]
        steps.append(Step("pool", [a["x"], a["lengths"], pack_params(T, C), a["pooled"]],
                          grid_1d(B, 1)))
        return steps

    async def profile(self, sentences: list[str]) -> dict[str, Any]:
        """GPU time of one forward pass of `sentences` (one batch) per role of its steps, from
        timestamp queries (`backend.profile`; needs `timestamp-query`): {"us": {role: µs summed
        over the layers}, "sum_us": the dispatches timed alone, "whole_us": the pass as
        embed runs it, "kernels": {role: kernel}, "steps": [[role, kernel, µs], ...] every
        dispatch in order (embed, then each layer's 7, then pool), "shape": [B, T]}."""
        batch = self.tokenizer.encode_batch(sentences, self.max_length, caller="profile")
        B, T = batch.ids.shape
        if B == 0:
            raise ValueError("profile takes at least one sentence (one batch to time)")
        shape = await self._shape(B, T)
        try:
            r = await self.backend.profile(shape.plan, [batch.ids.reshape(-1), batch.lengths])
        finally:
            shape.release()
        us: dict[str, float] = {}
        kernels: dict[str, str] = {}
        for (role, t), op in zip(r["steps"], r["ops"]):  # roles: the names _forward gives
            us[role] = us.get(role, 0.0) + t
            kernels[role] = op
        return {"us": us, "sum_us": r["sum_us"], "whole_us": r["whole_us"], "kernels": kernels,
                "steps": [[role, op, t] for (role, t), op in zip(r["steps"], r["ops"])],
                "shape": [B, T]}

    async def embed(self, sentences: Iterable[str], batch_size: int = 32,
                    timings: dict[str, float] | None = None) -> np.ndarray:
        """Embeddings (N, 384) float32, L2-normalised, one row per sentence, in order.

        sentences: a list, tuple or 1-D numpy array of str, or any other iterable of str (a
        generator, a file's lines) read `batch_size` at a time. Tokenizing and the GPU work go
        batch by batch, so memory beyond the (N, 384) result is bounded by the batch (and the
        tokenizer's bounded caches), not by N. An empty input gives a (0, 384) array and runs
        nothing on the GPU. Each item must be a str of valid Unicode (a str subclass is read
        as its plain str value): otherwise TypeError naming `embed`, the item's index and its
        type, or ValueError naming a lone surrogate (which JavaScript strings can hold and
        UTF-8 cannot; Hugging Face tokenizers refuses them too). A list, tuple or array is
        checked whole before any GPU work; other iterables batch by batch, as they are read.
        A sentence of more than max_seq_length (256) tokens keeps its first 254 word pieces
        between [CLS] and [SEP], as sentence-transformers truncates; tokenizing it costs its
        normalization (linear, mostly in C) and the words kept, not every word (1 MB took
        0.01-1.5 s on a shared 2-core machine; Hugging Face tokenizers took 0.3-20 s).

        Each batch (at most 65,535 sentences) is padded to its longest sentence rounded up to
        a multiple of `pad_tokens_to` tokens (16 on a GPU, 1 on a CPU device; at most
        max_seq_length; padding is masked), run as one submission and read back once,
        straight into its rows of the result (an iterable without len() gets its rows joined
        at the end: one more copy of the result); batch i+1 is tokenized while the GPU runs
        batch i. `timings` (ms, accumulated): tokenize; prepare (the shape's buffers and plan:
        built on a new shape only); submit (one call: ids and lengths written, 44 dispatches
        recorded, submitted); gpu (waiting for the GPU, after what overlapped it); readback."""
        if isinstance(sentences, (str, bytes)):
            raise TypeError(f"embed takes a list of str, got {type(sentences).__name__}; wrap "
                            "a single sentence: [text]")
        if not isinstance(sentences, Iterable):
            raise TypeError(f"embed takes a list of str, got {type(sentences).__name__}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
            raise TypeError(f"embed: batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        batch_size = min(int(batch_size), MAX_BATCH)
        if isinstance(sentences, np.ndarray) and sentences.ndim != 1:
            raise TypeError(f"embed takes a 1-D array of str, got a {sentences.ndim}-D array")
        sized = isinstance(sentences, (list, tuple, np.ndarray))  # sliced below; others
        # (a deque, a generator, any iterable) are read a batch at a time
        if sized:  # every item checked before any GPU work (no copy of the list is made)
            for i, s in enumerate(sentences):
                if type(s) is not str or not s.isascii():
                    check_texts([s], "embed", i)
            out = np.empty((len(sentences), self.hidden), dtype=np.float32)  # (N, C)
        parts: list[np.ndarray] = []  # an iterable's rows, batch by batch: (B, C) each
        t = timings if timings is not None else {}
        tokens = 0
        inflight: list[tuple[Any, _Shape]] = []  # runs submitted and not yet finished, in order
        clock = time.perf_counter

        def add(key: str, since: float) -> float:
            now = clock()
            t[key] = t.get(key, 0.0) + (now - since) * 1e3
            return now

        async def finish(run: Any, shape: _Shape) -> None:
            try:
                t0 = clock()
                await run.wait()
                t["gpu"] = t.get("gpu", 0.0) + (clock() - t0) * 1e3 - run.copy_ms
                t["readback"] = t.get("readback", 0.0) + run.copy_ms
            finally:
                shape.release()

        if sized:
            batches: Iterator[tuple[int, Any]] = (
                (start, sentences[start:start + batch_size])
                for start in range(0, len(sentences), batch_size))
        else:
            batches = _batches_of(iter(sentences), batch_size)
        try:
            for start, texts in batches:
                if self._freed:  # freed by another task between two batches
                    raise UseAfterFree("embed: the model was freed; load it again")
                t0 = clock()
                batch = self.tokenizer.encode_batch(texts, self.max_length, self.pad_tokens_to,
                                                    caller="embed", first_index=start)
                B, T = batch.ids.shape
                if sized:
                    rows = out[start:start + B]  # (B, C) rows of the result
                else:
                    rows = np.empty((B, self.hidden), dtype=np.float32)  # (B, C)
                    parts.append(rows)
                tokens += int(batch.lengths.sum())
                t0 = add("tokenize", t0)
                shape = await self._shape(B, T)
                t0 = add("prepare", t0)
                try:
                    if self._freed:  # freed while this batch was tokenized or its shape built
                        raise UseAfterFree("embed: the model was freed; load it again")
                    run = self.backend.submit(shape.plan, [batch.ids.reshape(-1), batch.lengths],
                                              [rows])
                except BaseException:
                    shape.release()
                    raise
                inflight.append((run, shape))
                add("submit", t0)
                if len(inflight) > 1:  # the GPU ran batch i while this one was tokenized
                    await finish(*inflight.pop(0))
            while inflight:
                await finish(*inflight.pop(0))
        finally:
            while inflight:  # an error left runs in flight: let each end, then release it
                try:
                    await finish(*inflight.pop(0))
                except Exception:
                    pass  # the error being raised already says what went wrong
        self.last_tokens = tokens
        if not sized:
            out = (np.concatenate(parts) if parts  # (N, C): the one more copy
                   else np.empty((0, self.hidden), dtype=np.float32))
        return out


def _batches_of(sentences: Iterator[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    """(index of the first, up to `size` items) from an iterator, read as they are needed."""
    start = 0
    while True:
        texts = list(islice(sentences, size))
        if not texts:
            return
        yield start, texts
        start += len(texts)


class _Shape:
    """The activation tensors and forward-pass plan of one batch shape; `users` counts runs
    in flight, and a shape is freed only when none is."""

    def __init__(self, model: MiniLM, acts: dict[str, GpuTensor], plan: Plan) -> None:
        self.model, self.acts, self.plan = model, acts, plan
        self.users = 0

    def release(self) -> None:
        self.users -= 1
        self.model._evict()

    def free(self) -> None:
        self.plan.free()
        for tensor in self.acts.values():
            tensor.free()
