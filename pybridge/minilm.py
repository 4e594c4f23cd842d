"""all-MiniLM-L6-v2 sentence embeddings on the GPU: a 6-layer BERT, mean pooling, L2 norm.

    model = await MiniLM.load("/models/all-MiniLM-L6-v2/", dtype="float16", progress=...)
    vectors = await model.embed(["a sentence", ...], batch_size=32)   # (N, 384) float32

Per batch: tokenize (Python) -> upload ids and lengths (2 small copies) -> 38 dispatches
recorded into one compute pass and submitted once -> one readback straight into the rows of
the result. Activations stay on the GPU; their buffers and bind groups are reused for every
batch of the same shape, so a forward pass costs little Python.

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

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pybridge._env import IN_PYODIDE
from pybridge.backend import Backend, GpuTensor, default_backend
from pybridge.dispatch import matmul_plan, pack_params
from pybridge.tokenizer import WordPiece
from pybridge.weights import load_safetensors

ATTENTION_ROWS = 64  # attention.wgsl's query rows per workgroup
DTYPE_FILES = {"float32": "model-f32.safetensors", "float16": "model-f16.safetensors"}


async def _read_text(base: str | Path, name: str) -> str:
    """A small text file of the model: fetched in the browser, read from disk natively."""
    if not IN_PYODIDE:
        return (Path(base) / name).read_text(encoding="utf-8")
    import js

    url = _join(base, name)
    resp = await js.fetch(url)
    if not resp.ok:
        raise FileNotFoundError(f"{url}: HTTP {resp.status}")
    return str(await resp.text())


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
        self._activations: dict[tuple[int, int], dict[str, GpuTensor]] = {}
        self.last_tokens = 0  # tokens embedded by the last embed() call ([CLS]/[SEP] included)

    @classmethod
    async def load(cls, source: str | Path = "/models/all-MiniLM-L6-v2/", *,
                   dtype: str = "float32", backend: Backend | None = None,
                   progress: Callable[[int, int], Any] | None = None) -> "MiniLM":
        """Load the converted model (tools/convert_model.py) from a URL (browser) or folder
        (native). Weights stream into GPU buffers, checked against the manifest's sha256."""
        if dtype not in DTYPE_FILES:
            raise ValueError(f"dtype {dtype!r} is not available; accepted: {', '.join(DTYPE_FILES)}")
        backend = backend or await default_backend()
        manifest = json.loads(await _read_text(source, "manifest.json"))
        tokenizer = WordPiece.from_vocab_text(await _read_text(source, "vocab.txt"))
        name = DTYPE_FILES[dtype]
        weights = await load_safetensors(_join(source, name), backend,
                                         sha256=manifest["files"][name]["sha256"],
                                         progress=progress)
        return cls(backend, manifest["config"], weights, tokenizer, dtype)

    def free(self) -> None:
        """Release the weights and activations."""
        for t in self.w.values():
            t.free()
        for acts in self._activations.values():
            for t in acts.values():
                t.free()
        self._activations.clear()

    async def _buffers(self, B: int, T: int) -> dict[str, GpuTensor]:
        """Activation tensors for a (B, T) batch, reused while the shape repeats."""
        key = (B, T)
        if key not in self._activations:
            for acts in self._activations.values():  # keep one shape: free the previous one
                for t in acts.values():
                    t.free()
            self._activations.clear()
            M, C = B * T, self.hidden
            shapes = {"x": (M, C), "x1": (M, C), "qkv": (M, 3 * C), "ctx": (M, C),
                      "attn": (M, C), "h": (M, self.inner), "ffn": (M, C), "pooled": (B, C)}
            acts = {k: await self.backend.allocate(s, np.float32, label=k) for k, s in shapes.items()}
            acts["ids"] = await self.backend.allocate((M,), np.int32, label="ids")
            acts["lengths"] = await self.backend.allocate((B,), np.int32, label="lengths")
            self._activations[key] = acts
        return self._activations[key]

    async def _linear(self, x: GpuTensor, name: str, out: GpuTensor, M: int, N: int, K: int,
                      gelu: bool = False) -> None:
        op, grid, constants = matmul_plan(M, N, K, self.dtype == "float16",
                                          "shader-f16" in self.backend.features,
                                          self.backend.is_cpu)
        await self.backend.dispatch(
            op, [x, self.w[name + ".weight"], self.w[name + ".bias"], pack_params(M, N, K), out],
            grid, {"GELU": gelu, **constants})

    async def _forward(self, a: dict[str, GpuTensor], B: int, T: int) -> None:
        """Record the whole forward pass (embeddings, 6 layers, pooling) as one submission."""
        M, C, f16 = B * T, self.hidden, self.dtype == "float16"
        w = self.w
        ln = pack_params(M, C, self.eps)
        async with self.backend.batch():
            await self.backend.dispatch(
                "embed", [a["ids"], w["embeddings.word_embeddings.weight"],
                          w["embeddings.position_embeddings.weight"],
                          w["embeddings.token_type_embeddings.weight"],
                          w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                          pack_params(T, C, self.eps), a["x"]],
                (M, 1, 1), {"TABLE_F16": f16})
            for i in range(self.layers):
                p = f"encoder.layer.{i}."
                await self._linear(a["x"], p + "attention.qkv", a["qkv"], M, 3 * C, C)
                await self.backend.dispatch(
                    "attention", [a["qkv"], a["lengths"],
                                  pack_params(T, C, self.heads, float(C // self.heads) ** -0.5),
                                  a["ctx"]],
                    (-(-T // ATTENTION_ROWS), self.heads, B), {"HEAD_DIM": C // self.heads})
                await self._linear(a["ctx"], p + "attention.output.dense", a["attn"], M, C, C)
                await self.backend.dispatch(
                    "layernorm", [a["attn"], a["x"], w[p + "attention.output.LayerNorm.weight"],
                                  w[p + "attention.output.LayerNorm.bias"], ln, a["x1"]], (M, 1, 1))
                await self._linear(a["x1"], p + "intermediate.dense", a["h"], M, self.inner, C,
                                   gelu=True)
                await self._linear(a["h"], p + "output.dense", a["ffn"], M, C, self.inner)
                await self.backend.dispatch(
                    "layernorm", [a["ffn"], a["x1"], w[p + "output.LayerNorm.weight"],
                                  w[p + "output.LayerNorm.bias"], ln, a["x"]], (M, 1, 1))
            await self.backend.dispatch("pool", [a["x"], a["lengths"], pack_params(T, C),
                                                 a["pooled"]], (B, 1, 1))

    async def embed(self, sentences: list[str], batch_size: int = 32,
                    timings: dict[str, float] | None = None) -> np.ndarray:
        """Embeddings (N, 384) float32, L2-normalised. Each batch is padded to its longest
        sentence (at most max_seq_length tokens) and read back once, straight into its rows
        of the result. `timings` (ms, accumulated): tokenize, upload, encode (Python recording
        the dispatches), gpu, readback."""
        if isinstance(sentences, str):
            raise TypeError("embed takes a list of sentences; wrap a single one: [text]")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out = np.empty((len(sentences), self.hidden), dtype=np.float32)  # (N, C)
        t = timings
        self.last_tokens = 0
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            t0 = time.perf_counter()
            batch = self.tokenizer.encode_batch(chunk, self.max_length)
            B, T = batch.ids.shape
            self.last_tokens += int(batch.lengths.sum())
            t1 = time.perf_counter()
            a = await self._buffers(B, T)
            await self.backend.upload(batch.ids.reshape(-1), out=a["ids"])
            await self.backend.upload(batch.lengths, out=a["lengths"])
            t2 = time.perf_counter()
            await self._forward(a, B, T)
            t3 = time.perf_counter()
            if t is not None:
                await self.backend.sync()
            t4 = time.perf_counter()
            await a["pooled"].numpy(out=out[start:start + B])  # one copy, into the result
            t5 = time.perf_counter()
            if t is not None:
                for k, v in (("tokenize", t1 - t0), ("upload", t2 - t1), ("encode", t3 - t2),
                             ("gpu", t4 - t3), ("readback", t5 - t4)):
                    t[k] = t.get(k, 0.0) + v * 1e3
        return out
