"""The in-page half of tools/bench_gpu.py's MiniLM table, run by the page's Python (Pyodide,
pybridge's browser backend; in the benchmark on Dawn under Node). Public APIs only:
`MiniLM.load`, `model.embed(..., timings=)`, `model.profile`, `model.tokenizer`,
`pybridge.default_backend`.

Sentences are real words, each one token, so a sentence of T - 2 words is exactly T tokens
with [CLS] and [SEP] (checked with the model's tokenizer); every timed run embeds new
sentences, so no cache of whole texts makes tokenizing look cheaper than it is.
"""

from __future__ import annotations

import random
import statistics
import time

import pybridge
from pybridge.minilm import MiniLM

WORDS = """the of and to in is was for on that with as by at from his her it an were are which
this be or have had not but they one all their there been has when who more would she will
no if out so said what up its about into than them can only other new some could time these
two may then do first any like now my such make over our even most made after also did many
before must through back years where much your way well down should because each just those
people how too little state good very world still own see men work long get here between both
life being under never day same another know while last might us great old year off come
since against go came right used take three small house found water city school music river
light game power night book family field story point table voice space heart
""".split()

_model: MiniLM | None = None
_words: list[str] = []


async def load(base_url: str, dtype: str) -> dict:
    """Load the model (freeing the previous one); the backend's description and load time."""
    global _model, _words
    if _model is not None:
        _model.free()
        _model = None
    t0 = time.perf_counter()
    _model = await MiniLM.load(base_url, dtype=dtype)
    load_ms = (time.perf_counter() - t0) * 1e3
    tok = _model.tokenizer
    _words = sorted({w for w in WORDS if len(tok.encode(w, _model.max_length)) == 3})
    backend = await pybridge.default_backend()
    return {"dtype": dtype, "load_ms": load_ms, "words": len(_words),
            "backend": backend.describe(), "subgroups": backend.subgroups_note}


def sentences(batch: int, tokens: int, seed: int) -> list[str]:
    """`batch` different sentences of exactly `tokens` tokens ([CLS] and [SEP] included)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_words, k=tokens - 2)) for _ in range(batch)]


async def run(batch: int, tokens: int, warmup: int, reps: int) -> dict:
    """Median ms per stage of `reps` embeds of one batch (after `warmup`), each a new batch of
    sentences; `total` is the whole embed call, `other` what the stages do not cover."""
    if _model is None:
        raise RuntimeError("call load() first")
    check = sentences(1, tokens, seed=-1)[0]
    got = len(_model.tokenizer.encode(check, _model.max_length))
    if got != tokens:
        raise ValueError(f"a sentence meant to be {tokens} tokens has {got}")
    for i in range(warmup):
        await _model.embed(sentences(batch, tokens, seed=i), batch_size=batch)
    runs: list[dict[str, float]] = []
    for i in range(reps):
        texts = sentences(batch, tokens, seed=10_000 + i)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        out = await _model.embed(texts, batch_size=batch, timings=timings)  # (B, 384)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        timings["other"] = timings["total"] - sum(v for k, v in timings.items() if k != "total")
        embedded = getattr(_model, "last_tokens", batch * tokens)
        if embedded != batch * tokens:
            raise ValueError(f"embedded {embedded} tokens, expected {batch * tokens}")
        runs.append(timings)
    profile = None
    backend = await pybridge.default_backend()
    if "timestamp-query" in backend.features:  # GPU time per kernel role, one forward pass
        profile = await _model.profile(sentences(batch, tokens, seed=-2))
    keys = list(dict.fromkeys(k for r in runs for k in r))
    median = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    finite = bool((out == out).all())  # no NaN in the last batch
    return {"batch": batch, "tokens": tokens, "warmup": warmup, "reps": reps,
            "median_ms": median, "min_total_ms": min(r["total"] for r in runs),
            "finite": finite, "profile": profile}


def free() -> None:
    global _model
    if _model is not None:
        _model.free()
        _model = None


def tokenize(texts: list[str], runs: int) -> dict:
    """ms of encode_batch(texts, 128) in this Python (Pyodide): cold = a new tokenizer with its
    caches and the Unicode tables' memos emptied, warm = the same tokenizer again; best and
    median of `runs` each."""
    from pybridge import tokenizer as tk

    if _model is None:
        raise RuntimeError("call load() first")
    vocab = _model.tokenizer.vocab

    def timed(tok) -> float:
        t0 = time.perf_counter()
        tok.encode_batch(texts, 128)
        return (time.perf_counter() - t0) * 1e3

    cold = []
    for _ in range(runs):
        tk._tables().normalized.reset()
        tk._tables().spaced.reset()
        cold.append(timed(tk.WordPiece(vocab)))
    tok = tk.WordPiece(vocab)
    timed(tok)
    warm = [timed(tok) for _ in range(runs)]
    tokens = int(tok.encode_batch(texts, 128).lengths.sum())
    return {"texts": len(texts), "tokens": tokens, "cold_ms": min(cold),
            "cold_median_ms": statistics.median(cold), "warm_ms": min(warm),
            "warm_median_ms": statistics.median(warm)}
