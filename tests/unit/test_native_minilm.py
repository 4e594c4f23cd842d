"""all-MiniLM-L6-v2 on the native backend (wgpu-py, lavapipe in CI) against
sentence-transformers run natively: cosine similarity per sentence, batching invariance."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pybridge.minilm import MiniLM
from pybridge.native import NativeBackend
from tests.cases.corpus import MODEL_SENTENCES
from tests.reference import MODEL_DIR, cosine, need, st_embeddings

MIN_COSINE = {"float32": 0.9999, "float16": 0.999}


@pytest.fixture(scope="module")
def backend():
    b = asyncio.run(NativeBackend.create())
    yield b
    b.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return st_embeddings(tmp_path_factory.mktemp("st"), MODEL_SENTENCES)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
async def test_embeddings_match_sentence_transformers(backend, reference, dtype):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, dtype=dtype, backend=backend)
    try:
        got = await model.embed(MODEL_SENTENCES, batch_size=4)
        single = np.concatenate([await model.embed([s]) for s in MODEL_SENTENCES[:3]])
    finally:
        model.free()
    assert got.shape == (len(MODEL_SENTENCES), 384) and got.dtype == np.float32
    cos = cosine(got, reference)
    assert cos.min() >= MIN_COSINE[dtype], dict(zip(MODEL_SENTENCES, cos.round(6)))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(single, got[:3], atol=1e-5)  # batched == one at a time


async def test_bad_arguments(backend):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    with pytest.raises(ValueError, match="dtype 'int8' is not available; accepted: float32, float16"):
        await MiniLM.load(MODEL_DIR, dtype="int8", backend=backend)
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    try:
        with pytest.raises(TypeError, match="takes a list of sentences"):
            await model.embed("one string")
        with pytest.raises(ValueError, match="batch_size must be at least 1"):
            await model.embed(["x"], batch_size=0)
        assert (await model.embed([])).shape == (0, 384)
    finally:
        model.free()


async def test_concurrent_embeds_each_get_their_own_rows(backend):
    """Found in review: two concurrent embeds of one batch shape shared activation buffers
    and one open compute pass, and one silently got the other's embeddings."""
    from tests.cases.plans import concurrent_embeds

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    try:
        r = await concurrent_embeds(model)
    finally:
        model.free()
    assert r["distinct"] > 0.1  # the sentences differ, so a swap would show
    assert max(r["same_shape"], r["reversed"], r["other_shape"]) < 1e-5, r


def test_a_forward_pass_of_257_x_256_tokens_stays_within_grid_limits():
    """65,792 rows: the per-row kernels fold their grid into y instead of asking for more than
    65,535 workgroups in x (which failed validation before)."""
    import json
    from collections import defaultdict
    from types import SimpleNamespace

    from pybridge.backend import GpuTensor

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    config = json.loads((MODEL_DIR / "manifest.json").read_text())["config"]
    stub = SimpleNamespace(features=frozenset(), is_cpu=False, generation=0)
    placeholder = GpuTensor.__new__(GpuTensor)
    model = MiniLM(stub, config, defaultdict(lambda: placeholder), None, "float32")
    steps = model._forward(defaultdict(lambda: placeholder), 257, 256)
    assert len(steps) == 2 + 7 * config["num_layers"]
    assert max(max(s.grid) for s in steps) <= 65535
    rows = [s.grid for s in steps if s.op in ("embed", "layernorm")]
    assert all(x * y >= 257 * 256 and x <= 65535 for x, y, _ in rows)


async def test_profile_names_every_kernel_role(backend):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    try:
        r = await model.profile(["a short sentence", "and another one here"])
    finally:
        model.free()
    assert set(r["us"]) == {"embed", "qkv", "attention", "out", "layernorm", "ffn1", "ffn2",
                            "pool"}
    assert all(t > 0 for t in r["us"].values()) and r["whole_us"] > 0, r


async def test_an_error_finishing_one_batch_still_ends_the_next_run(backend, monkeypatch):
    """Found in review: when finishing batch i raised, the run of batch i+1 (already submitted)
    was never waited for: its shape stayed in use forever and its read buffer stayed mapped."""
    from pybridge.native import _NativeRun

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    s = ["the cat sat on the mat", "a dog ran in the park"] * 2
    original, calls = _NativeRun.wait, []

    async def failing(self):
        await original(self)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("error finishing batch 0")

    try:
        await model.embed(s, batch_size=2)
        monkeypatch.setattr(_NativeRun, "wait", failing)
        with pytest.raises(RuntimeError, match="error finishing batch 0"):
            await model.embed(s, batch_size=2)
        monkeypatch.undo()
        assert len(calls) == 2  # the second run was waited for too
        assert all(v.users == 0 for v in model._shapes.values())
        assert all(b.map_state == "unmapped" for b in backend._read_pool)
        again = await model.embed(s, batch_size=2)  # and the model still answers
        np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, rtol=1e-5)
    finally:
        model.free()


async def test_sentences_of_varied_lengths_share_a_few_plans(backend, monkeypatch):
    """Batches are padded to a multiple of 16 tokens, so real text of varied lengths reuses a
    shape's plan instead of building one per batch (found in review: 367 ms of `prepare` on
    48 sentences); the padding is masked, so the embeddings do not change."""
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    assert model.pad_tokens_to == 1  # lavapipe is a CPU: padded rows would cost compute
    model.pad_tokens_to = 16  # as on a GPU
    built = []
    original = MiniLM._build

    async def counting(self, B, T):
        built.append((B, T))
        return await original(self, B, T)

    monkeypatch.setattr(MiniLM, "_build", counting)
    words = "the quick brown fox jumps over a lazy dog near our house".split()
    texts = [" ".join(words[:k]) for k in range(1, 12)]  # 3 to 13 tokens
    try:
        one_by_one = np.concatenate([await model.embed([t]) for t in texts])
        padded = await model.embed(texts, batch_size=len(texts))
    finally:
        model.free()
    assert built == [(1, 16), (len(texts), 16)]
    np.testing.assert_allclose(one_by_one, padded, atol=1e-5)


async def test_kernels_run_beside_a_model(backend):
    from tests.cases.plans import kernels_beside_a_model

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    try:
        r = await kernels_beside_a_model(model, backend)
    finally:
        model.free()
    assert r["embed_error"] < 1e-5 and r["kernel_error"] == 0.0, r


async def test_a_model_freed_while_embedding(backend):
    from tests.cases.plans import free_while_embedding

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    r = await free_while_embedding(lambda: MiniLM.load(MODEL_DIR, backend=backend), backend)
    assert (r["outcome"] == "result" and r["error"] < 1e-5
            or r["outcome"].startswith("UseAfterFree: embed: the model was freed")), r
    assert r["works"] and r["left"] == 0, r
