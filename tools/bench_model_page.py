"""The in-browser half of tools/bench_model.py (shipped into the page's Python)."""

from __future__ import annotations

import time

import pybridge
from pybridge.minilm import MiniLM

_model = None


async def load(dtype: str) -> float:
    global _model
    if _model is not None:
        _model.free()
    t0 = time.perf_counter()
    _model = await MiniLM.load("/models/all-MiniLM-L6-v2/", dtype=dtype)
    return (time.perf_counter() - t0) * 1e3


async def run(batch: int, words: int, path: str) -> dict:
    """One timed embed of `batch` sentences of `words` words (warmed up at that shape first)."""
    vocab = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "again"]
    sentences = [" ".join(vocab[i % len(vocab)] for i in range(words))] * batch  # words + 2 tokens
    paths = ("naive", "naive") if path == "naive" else (None, None)
    pybridge.set_default_paths(*paths)
    try:
        await _model.embed(sentences, batch_size=batch)  # compiles, allocates, warms the caches
        timings: dict[str, float] = {}
        with pybridge.count_copies() as c:
            t0 = time.perf_counter()
            await _model.embed(sentences, batch_size=batch, timings=timings)
            total = (time.perf_counter() - t0) * 1e3
    finally:
        pybridge.set_default_paths(None, None)
    tokens = len(_model.tokenizer.encode(sentences[0], _model.max_length))
    timings["python_other"] = total - sum(timings.values())
    return {"batch": batch, "tokens": tokens, "path": path, "total_ms": total,
            "timings_ms": timings, "copies": c.as_dict()}
