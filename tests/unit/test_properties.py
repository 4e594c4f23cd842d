"""Property-based tests (hypothesis): the tokenizer against Hugging Face `tokenizers` on text
drawn from the whole of Unicode and from the pieces where tokenizers go wrong, and the
upload/readback round trip on the native backend (lavapipe in CI), bit for bit.

Reproducible in CI: every test is derandomized (its examples follow from its source) with
no example database, a bounded number of examples and no deadline (a shared 2-core machine).
A failure prints the smallest example found; pin it with @example before fixing it.

The tokenizer gives ids, an attention mask and lengths (no offsets: nothing in pybridge maps
ids back to text), so those are what is compared.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pybridge.native import NativeBackend
from pybridge.tokenizer import WordPiece, normalize, pre_tokenize
from tests.cases.datapath import DTYPES
from tests.unit.test_tokenizer import NO_LIMIT, RANDOM_PIECES, RANDOM_POOLS, hf, hf_ids, hf_words  # noqa: F401
from tests.unit.test_tokenizer import model_files, ours  # noqa: F401  (fixtures)


def reproducible(max_examples: int):
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- text ------------------------------------------------------------------------------------

# Any code point but surrogates (a str with a lone surrogate is refused: test_native_minilm).
ANY_CHAR = st.characters(exclude_categories=("Cs",))
# Where a BERT tokenizer can go wrong: the pools of test_tokenizer.py (accents, combining marks
# NFD reorders, CJK and its edges, emoji, format and private-use characters, code points whose
# Unicode properties changed), whitespace of every kind, control characters, added tokens.
POOL_CHAR = st.sampled_from(sorted({c for pool in RANDOM_POOLS.values() for c in pool}))
SPACE = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\xa0",
                         "\u1680", "\u2000", "\u2028", "\u2029", "\u202f", "\u3000", "\u180e"])
CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x9f", "\u200b", "\u200d",
                           "\ufeff", "\ufffd", "\ufffe", "\U000e0001"])
PIECE = st.sampled_from(RANDOM_PIECES + ["café", "naïve", "Ünïcödé", "日本語", "😀👍🏽",
                                         "👨\u200d👩\u200d👧", "🇫🇷", "e\u0301", "ﬁ", "İ"])
# Words past WordPiece's 100 characters and long runs without a space (chunks of more than
# 100 characters take another path through the tokenizer).
LONG_WORD = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "日", "ab", "x,", "[SEP]"]),
                      st.integers(20, 160))
TEXT = st.lists(st.one_of(ANY_CHAR, POOL_CHAR, POOL_CHAR, SPACE, CONTROL, PIECE, LONG_WORD,
                          st.text(ANY_CHAR, max_size=8)),
                max_size=40).map("".join)


@pytest.fixture(scope="module")
def fresh(ours):  # noqa: F811
    """A tokenizer of the same vocabulary with its own (empty) caches."""
    return WordPiece(ours.vocab)


@reproducible(400)
@given(text=TEXT)
@example(text="x" * 120 + "," + "y" * 99 + "!" * 300)
@example(text=("[CLS]" + "ab," * 40) * 8)
def test_ids_equal_hf_for_any_text(hf, fresh, text):  # noqa: F811
    want = hf_ids(hf, [text])[0]
    assert fresh.encode(text, NO_LIMIT) == want
    assert fresh.encode(text, NO_LIMIT) == want  # again, from the caches


@reproducible(400)
@given(text=TEXT, max_length=st.integers(2, 40))
@example(text="a" * 101 + "," + "b" * 100, max_length=3)  # a long chunk cut short
@example(text=" " * 700 + "x " * 30, max_length=5)  # many empty chunks before the ids
def test_truncated_ids_equal_hf(hf, fresh, text, max_length):  # noqa: F811
    assert fresh.encode(text, max_length) == hf_ids(hf, [text], max_length)[0]


@reproducible(300)
@given(text=TEXT)
def test_normalizer_and_pre_tokenizer_equal_hf(hf, text):  # noqa: F811
    normalized = hf.normalizer.normalize_str(text)
    assert normalize(text) == normalized
    assert pre_tokenize(normalized) == hf_words(hf, normalized)


@reproducible(150)
@given(texts=st.lists(TEXT, max_size=12), max_length=st.integers(2, 48),
       multiple=st.sampled_from([1, 8, 16]))
def test_batches_equal_hf_truncated_and_padded(hf, fresh, texts, max_length,  # noqa: F811
                                               multiple):
    got = fresh.encode_batch(texts, max_length, pad_to_multiple_of=multiple)
    rows = hf_ids(hf, texts, max_length)
    width = max([len(r) for r in rows], default=2)
    width = max(width, min(-(-width // multiple) * multiple, max_length))  # HF: see below
    assert got.ids.shape == got.attention_mask.shape == (len(texts), width)
    assert got.lengths.tolist() == [len(r) for r in rows]
    assert got.ids.tolist() == [r + [0] * (width - len(r)) for r in rows]
    assert got.attention_mask.tolist() == [[1] * len(r) + [0] * (width - len(r)) for r in rows]
    if texts:  # HF's own padding (pad_to_multiple_of may exceed max_length there too)
        hf.enable_truncation(max_length)
        hf.enable_padding(pad_id=0, pad_token="[PAD]", pad_to_multiple_of=multiple)
        try:
            want = hf.encode_batch(texts)
        finally:
            hf.no_padding()
            hf.no_truncation()
        if width % multiple == 0:  # ours stops at max_length where HF rounds past it
            assert got.ids.tolist() == [e.ids for e in want]
            assert got.attention_mask.tolist() == [e.attention_mask for e in want]


# --- the upload/readback round trip ------------------------------------------------------------

@pytest.fixture(scope="module")
def backend():
    b = asyncio.run(NativeBackend.create())
    yield b
    b.close()


BITS = {"float32": np.uint32, "float16": np.uint16}
# Bit patterns that matter for floats: quiet and signalling NaNs with payloads and both signs,
# the infinities, -0.0, the smallest and largest subnormals, the largest finite values.
SPECIAL_BITS = {
    "float32": [0x7FC00000, 0x7F800001, 0xFFC00001, 0x7FBFFFFF, 0x7F800000, 0xFF800000,
                0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF],
    "float16": [0x7E00, 0x7C01, 0xFE01, 0x7DFF, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x83FF, 0x7BFF],
}


@st.composite
def arrays(draw, dtype: str, max_side: int = 40):
    """An array of `dtype` (floats as raw bits: any NaN payload, subnormals, -0.0), any shape
    of up to 3 dimensions (0-d and sides of 0 included), and sometimes a non-contiguous view
    of it (every other row, reversed, transposed)."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side))
    raw = BITS.get(dtype, np.dtype(dtype).type)
    info = np.iinfo(raw)
    elements = st.integers(int(info.min), int(info.max))
    if dtype in SPECIAL_BITS:
        elements = st.one_of(elements, st.sampled_from(SPECIAL_BITS[dtype]))
    a = draw(hnp.arrays(raw, shape, elements=elements)).view(dtype)
    view = draw(st.sampled_from(["whole", "step", "reversed", "transposed"])) if shape else "whole"
    if view == "step":
        a = a[::2]
    elif view == "reversed":
        a = a[..., ::-1]
    elif view == "transposed":
        a = a.T
    return a


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


@reproducible(250)
@given(data=st.data(), dtype=st.sampled_from(DTYPES),
       paths=st.sampled_from([(None, None), ("naive", "naive"), ("view", "naive"),
                              ("naive", "ring")]),
       into_out=st.booleans())
def test_roundtrip_is_bit_exact(backend, data, dtype, paths, into_out):
    a = data.draw(arrays(dtype), label="array")
    before = backend.live_buffers()

    async def roundtrip():
        t = await backend.upload(a, path=paths[0])
        try:
            out = np.empty(a.shape, a.dtype) if into_out else None
            got = await t.numpy(out=out, path=paths[1])
            assert got is out or out is None
            return got
        finally:
            t.free()

    got = asyncio.run(roundtrip())
    assert same_bits(got, a), (a.shape, a.strides)
    assert backend.live_buffers() <= before + 1  # at most the readback pool's new buffer


@reproducible(60)
@given(dtype=st.sampled_from(DTYPES), data=st.data())
def test_upload_into_an_existing_tensor_is_bit_exact(backend, dtype, data):
    a = data.draw(arrays(dtype, max_side=20), label="first")
    b = data.draw(hnp.arrays(BITS.get(dtype, np.dtype(dtype).type), a.shape), label="second")
    b = b.view(dtype)

    async def twice():
        t = await backend.upload(a)
        try:
            first = await t.numpy()
            await backend.upload(b, out=t)  # same tensor, new contents
            return first, await t.numpy()
        finally:
            t.free()

    first, second = asyncio.run(twice())
    assert same_bits(first, a) and same_bits(second, b)
