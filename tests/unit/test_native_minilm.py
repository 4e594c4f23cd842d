"""all-MiniLM-L6-v2 on the native backend (wgpu-py, lavapipe in CI) and the CPU backend (numpy)
against sentence-transformers run natively: cosine similarity per sentence, batching
invariance."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import deque

import numpy as np
import pytest

from pybridge.checks.selftest import MIN_COSINE  # the page's self-test's thresholds too
from pybridge.minilm import MiniLM
from tests.cases.corpus import MODEL_SENTENCES
from tests.reference import MODEL_DIR, cosine, need, st_embeddings
from tests.unit.test_tokenizer import hf, hf_ids, model_files  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory):
    """Where sentence-transformers' copy of the model lies: one per module, loaded once."""
    return tmp_path_factory.mktemp("st")


@pytest.fixture(scope="module")
def reference(st_dir):
    return st_embeddings(st_dir, MODEL_SENTENCES)


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
        with pytest.raises(TypeError, match="embed takes a list of str, got str; wrap a single"):
            await model.embed("one string")
        with pytest.raises(ValueError, match="batch_size must be at least 1"):
            await model.embed(["x"], batch_size=0)
        assert (await model.embed([])).shape == (0, 384)
        # found in review: a deque (a Sequence that cannot be sliced) raised a raw TypeError
        texts = ["a cat", "two dogs", "three birds"]
        np.testing.assert_array_equal(await model.embed(deque(texts), batch_size=2),
                                      await model.embed(texts, batch_size=2))
    finally:
        model.free()


async def test_a_manifest_without_the_dtype_is_named(backend, tmp_path):
    # found in review: a bare KeyError: 'model-f16.safetensors'
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    del manifest["files"]["model-f16.safetensors"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(MODEL_DIR / "vocab.txt", tmp_path / "vocab.txt")
    with pytest.raises(ValueError, match=r"manifest.json lists no model-f16.safetensors: dtype "
                                         r"'float16' is not in this model; it has model-f32"):
        await MiniLM.load(tmp_path, dtype="float16", backend=backend)
    # found in review: a config without its keys streamed every weight, then a bare KeyError
    manifest["config"] = {}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    before = backend.live_buffers()
    with pytest.raises(ValueError, match=r"manifest.json: not a model manifest .*hidden_size"):
        await MiniLM.load(tmp_path, dtype="float32", backend=backend)
    assert backend.live_buffers() == before


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


async def test_profile_names_every_kernel_role(native_backend):
    backend = native_backend  # timestamp-query: a GPU's
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, backend=backend)
    try:
        r = await model.profile(["a short sentence", "and another one here"])
    finally:
        model.free()
    assert set(r["us"]) == {"embed", "qkv", "attention", "out", "layernorm", "ffn1", "ffn2",
                            "pool"}
    assert all(t > 0 for t in r["us"].values()) and r["whole_us"] > 0, r


async def test_an_error_finishing_one_batch_still_ends_the_next_run(native_backend, monkeypatch):
    """Found in review: when finishing batch i raised, the run of batch i+1 (already submitted)
    was never waited for: its shape stayed in use forever and its read buffer stayed mapped."""
    backend = native_backend  # it patches the native run's wait
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


# --- hostile input -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(backend):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    m = asyncio.run(MiniLM.load(MODEL_DIR, backend=backend))
    yield m
    m.free()


class Evil(str):
    """A str subclass whose methods all lie: embed must read its plain str value."""

    def split(self, *a, **k):
        raise AssertionError("a str subclass's split ran")

    lower = translate = isascii = encode = strip = replace = split

    def __len__(self):
        return 0

    def __iter__(self):
        return iter("garbage")


@pytest.mark.parametrize("bad, where, kind", [
    (None, 0, "NoneType"), (b"bytes", 2, "bytes \\(decode it first"), (3, 1, "int"),
    (2.5, 2, "float"), (["nested"], 1, "list \\(a nested list"), (("t",), 0, "tuple"),
    ({"a": 1}, 2, "dict"), (memoryview(b"hi"), 1, "memoryview"), (np.float32(1), 0, "float32"),
])
async def test_embed_names_the_item_that_is_not_a_str(backend, model, bad, where, kind):
    """Found here: the error named `encode_batch` (which the user never called) and counted
    items within the batch; JavaScript's null, numbers, arrays, objects and typed arrays reach
    Python as None, int/float, list, dict and memoryview."""
    texts = ["fine", "also fine", "third"]
    texts[where] = bad
    before, shapes = backend.live_buffers(), dict(model._shapes)
    for batch_size in (1, 32):
        with pytest.raises(TypeError, match=rf"^embed takes a list of str, item {where} is {kind}"):
            await model.embed(texts, batch_size=batch_size)
    assert backend.live_buffers() == before and model._shapes == shapes  # no GPU work at all


@pytest.mark.parametrize("bad, error, match", [
    ("one string", TypeError, "embed takes a list of str, got str; wrap a single sentence"),
    (b"bytes", TypeError, "embed takes a list of str, got bytes"),
    (None, TypeError, "embed takes a list of str, got NoneType"),
    (42, TypeError, "embed takes a list of str, got int"),
    (np.array([["a", "b"]]), TypeError, "embed takes a 1-D array of str, got a 2-D array"),
    (np.array("a"), TypeError, "embed takes a 1-D array of str, got a 0-D array"),
])
async def test_embed_refuses_what_is_not_a_list(backend, model, bad, error, match):
    before = backend.live_buffers()
    with pytest.raises(error, match=match):
        await model.embed(bad)
    with pytest.raises(TypeError, match="embed: batch_size must be an int, got str"):
        await model.embed(["x"], batch_size="32")
    assert backend.live_buffers() == before


async def test_an_iterable_is_read_batch_by_batch_and_errors_count_from_its_start(backend, model,
                                                                                 monkeypatch):
    """A generator (found here: `len()` of it failed) is read batch_size at a time, each batch
    when it is tokenized, and gives the rows a list gives; a bad item deep inside it is named
    by its index in the whole input, and the batches run before it leave no run in flight."""
    texts = ["a cat", "the sun", "rain"]
    as_list = await model.embed(texts)
    read: list[str] = []
    at_submit: list[tuple[int, int]] = []  # (sentences read, rows submitted), at each submit

    def sentences():
        for t in texts:
            read.append(t)
            yield t

    submit = backend.submit

    def counting(plan, inputs, outputs):
        rows = len(outputs[0]) + (at_submit[-1][1] if at_submit else 0)
        at_submit.append((len(read), rows))
        return submit(plan, inputs, outputs)

    monkeypatch.setattr(backend, "submit", counting)
    got = await model.embed(sentences(), batch_size=2)
    np.testing.assert_allclose(got, as_list, atol=1e-5)
    assert at_submit == [(2, 2), (3, 3)]  # never read past the batch at hand
    for empty in ([], (), np.array([], dtype=str), iter([]), {}):
        out = await model.embed(empty)
        assert out.shape == (0, 384) and out.dtype == np.float32
    monkeypatch.undo()
    bad = (t if i != 3 else None for i, t in enumerate(texts * 2))
    with pytest.raises(TypeError, match="^embed takes a list of str, item 3 is NoneType"):
        await model.embed(bad, batch_size=2)  # the first batch runs, the second has item 3
    assert all(v.users == 0 for v in model._shapes.values())
    assert all(b.map_state == "unmapped" for b in getattr(backend, "_read_pool", ()))


async def test_str_subclasses_and_numpy_strings_are_read_as_plain_str(model):
    texts = ["a man eats", "café"]
    plain = await model.embed(texts)
    np.testing.assert_array_equal(await model.embed((Evil(texts[0]), np.str_(texts[1]))), plain)


@pytest.mark.parametrize("text, cp, at", [
    ("\ud800", "D800", 0), ("caf\udce9", "DCE9", 3), ("ok \udfff", "DFFF", 3),
    ("\ud83d\ude00", "D83D", 0),  # a pair as JavaScript holds it is two code points here
    ("word " * 1000 + "\ud800", "D800", 5000),  # past the 256 tokens kept: HF refuses it too
])
async def test_lone_surrogates_are_refused_naming_embed_and_the_item(backend, model, text, cp, at):
    """JavaScript strings can hold lone surrogates (Pyodide passes them on as they are); UTF-8
    cannot, and Hugging Face tokenizers refuses such a str ("TextInputSequence must be str").
    Found here: the error did not name `embed` nor the item, and a surrogate past the part of
    the text kept by truncation was silently accepted. The replacement the message suggests
    (U+FFFD, as JavaScript's toWellFormed() gives; the normalizer drops it) is accepted."""
    before = backend.live_buffers()
    with pytest.raises(ValueError, match=rf"^embed: item 1 contains a lone surrogate "
                                         rf"\(U\+{cp} at character {at}\).*toWellFormed"):
        await model.embed(["fine", text])
    assert backend.live_buffers() == before
    well_formed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    want = ("\U0001f600" if text == "\ud83d\ude00"  # the pair joined, as JavaScript reads it
            else "".join(c for c in text if not "\ud800" <= c <= "\udfff"))
    ids = model.tokenizer.encode_batch([well_formed, want], 256).ids
    assert ids[0].tolist() == ids[1].tolist()


async def test_a_1mb_sentence_is_truncated_as_sentence_transformers_does(model, st_dir,
                                                                       hf):  # noqa: F811
    """1 MB of English in one sentence: the first 254 word pieces are kept, as
    sentence-transformers keeps them (max_seq_length 256), and the embedding matches its
    embedding of the same 1 MB string; tokenizing it takes milliseconds, not the time of the
    whole text (tests/unit/test_tokenizer.py times 1 MB texts of other shapes)."""
    import time

    text = " ".join(MODEL_SENTENCES[:3] + MODEL_SENTENCES[7:])
    text = (text + " ") * (1_000_000 // (len(text) + 1)) + "end"
    assert len(text.encode()) >= 990_000
    t0 = time.perf_counter()
    batch = model.tokenizer.encode_batch([text], model.max_length)
    tokenize_s = time.perf_counter() - t0
    # a guard against the quadratic cost found (36-58 s), far above what it takes (< 0.5 s)
    assert batch.ids.shape == (1, 256) and tokenize_s < 15, tokenize_s
    assert batch.ids[0].tolist() == hf_ids(hf, [text[:20_000]], 256)[0]  # cut well past 256
    got = await model.embed([text])
    assert cosine(got, st_embeddings(st_dir, [text]))[0] >= MIN_COSINE["float32"]


async def test_memory_is_bounded_by_the_batch_not_by_the_number_of_sentences(backend, model,
                                                                            monkeypatch):
    """embed's peak Python memory (tracemalloc) beyond the (N, 384) result is the same for
    6,000 and 24,000 sentences, within 1 MB (the tokenizer's caches, bounded by their limits,
    are made small here so that both runs fill them), and 100,000 sentences go through.
    The GPU's work is skipped (lavapipe runs a few sentences a second): each batch is
    tokenized and its plan resolved on the native backend, then a stand-in run writes its
    rows; that the GPU path keeps nothing per batch is checked by the tests above (no run in
    flight, no buffer left)."""
    import time
    import tracemalloc

    from pybridge import tokenizer
    from pybridge.backend import Submission

    class Done(Submission):
        def __init__(self, rows):
            self.rows = rows

        async def wait(self):
            self.rows[:] = 1.0

    monkeypatch.setattr(backend, "submit", lambda plan, inputs, outputs: Done(outputs[0]))
    monkeypatch.setattr(model, "pad_tokens_to", 16)  # one batch shape, as on a GPU
    words = "the quick brown fox jumps over a lazy dog near our house today".split()

    def sentences(n):
        return [f"sentence {i} says {words[i % 13]} {i * 7919 % 100003}" for i in range(n)]

    def fresh_tokenizer():  # empty caches for each run
        monkeypatch.setattr(model, "tokenizer", tokenizer.WordPiece(model.tokenizer.vocab))

    async def peak(n):
        texts = sentences(n)
        fresh_tokenizer()
        tracemalloc.start()
        try:
            out = await model.embed(texts, batch_size=32)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert out.shape == (n, 384) and (out == 1.0).all()
        return top - out.nbytes

    for name in ("_CHUNK_CACHE_LIMIT", "_WORD_CACHE_LIMIT"):
        monkeypatch.setattr(tokenizer, name, 2000)
    small, large = await peak(6_000), await peak(24_000)
    assert large < 8 << 20 and large - small < 1 << 20, (small, large)
    monkeypatch.undo()
    monkeypatch.setattr(backend, "submit", lambda plan, inputs, outputs: Done(outputs[0]))
    monkeypatch.setattr(model, "pad_tokens_to", 16)
    fresh_tokenizer()
    texts = sentences(100_000)
    t0 = time.perf_counter()
    out = await model.embed(texts, batch_size=32)
    assert out.shape == (100_000, 384) and time.perf_counter() - t0 < 300  # not quadratic
