"""BERT WordPiece tokenization in pure Python (runs in Pyodide and CPython alike).

Matches Hugging Face `tokenizers` for BERT uncased models (all-MiniLM-L6-v2's
tokenizer.json: BertNormalizer(clean_text, handle_chinese_chars, lowercase, strip_accents
following lowercase), BertPreTokenizer, WordPiece with "##" continuation and [UNK] for
words over 100 characters or without a segmentation, [CLS] ... [SEP] around each text).
The tests compare ids with `tokenizers` itself on a varied corpus.

    tok = WordPiece.from_vocab_text(open("vocab.txt").read())
    batch = tok.encode_batch(["a sentence", "another"], max_length=256)
    batch.ids, batch.attention_mask, batch.lengths    # (B, T) int32, (B, T) int32, (B,) int32
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

# Rust's char::is_whitespace (the Unicode White_Space property), which BertPreTokenizer uses.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _is_bert_whitespace(c: str) -> bool:
    """BertNormalizer's whitespace: space, \\t, \\n, \\r and category Zs."""
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_control(c: str) -> bool:
    if c in "\t\n\r":
        return False
    return unicodedata.category(c).startswith("C")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def normalize(text: str) -> str:
    """BertNormalizer: clean text, space out CJK characters, strip accents, lowercase."""
    out = []
    for c in text:
        cp = ord(c)
        if cp == 0 or cp == 0xFFFD or _is_control(c):
            continue
        if _is_bert_whitespace(c):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {c} ")
        else:
            out.append(c)
    text = unicodedata.normalize("NFD", "".join(out))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return text.lower()


def pre_tokenize(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace (dropped) and punctuation (kept, one per piece)."""
    words: list[str] = []
    current: list[str] = []
    for c in text:
        if c in _WHITE_SPACE:
            if current:
                words.append("".join(current))
                current = []
        elif _is_punctuation(c):
            if current:
                words.append("".join(current))
                current = []
            words.append(c)
        else:
            current.append(c)
    if current:
        words.append("".join(current))
    return words


@dataclass
class Batch:
    """Token ids of a padded batch (right padding with [PAD] = 0)."""

    ids: np.ndarray  # (B, T) int32
    attention_mask: np.ndarray  # (B, T) int32, 1 for real tokens
    lengths: np.ndarray  # (B,) int32, real tokens per row ([CLS] and [SEP] included)


class WordPiece:
    def __init__(self, vocab: dict[str, int], unk: str = "[UNK]", cls: str = "[CLS]",
                 sep: str = "[SEP]", pad: str = "[PAD]", max_chars_per_word: int = 100,
                 prefix: str = "##") -> None:
        for token in (unk, cls, sep, pad):
            if token not in vocab:
                raise ValueError(f"vocabulary has no {token} token")
        self.vocab = vocab
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (vocab[unk], vocab[cls], vocab[sep],
                                                              vocab[pad])
        self.max_chars_per_word = max_chars_per_word
        self.prefix = prefix
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_vocab_text(cls, text: str) -> "WordPiece":
        """vocab.txt: one token per line, the line number is its id."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls({token: i for i, token in enumerate(lines)})

    def word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece of one pre-tokenized word."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word) > self.max_chars_per_word:
            ids = [self.unk_id]
        else:
            ids = []
            start = 0
            while start < len(word):
                end = len(word)
                found = None
                while start < end:
                    piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                    found = self.vocab.get(piece)
                    if found is not None:
                        break
                    end -= 1
                if found is None:
                    ids = [self.unk_id]
                    break
                ids.append(found)
                start = end
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str, max_length: int = 256) -> list[int]:
        """[CLS] + WordPiece ids + [SEP], truncated so the whole fits max_length."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
        ids: list[int] = []
        for word in pre_tokenize(normalize(text)):
            ids.extend(self.word_ids(word))
            if len(ids) >= max_length - 2:
                break
        return [self.cls_id, *ids[: max_length - 2], self.sep_id]

    def encode_batch(self, texts: list[str], max_length: int = 256) -> Batch:
        """Encode and right-pad to the longest text of the batch."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("encode_batch takes a list of str")
        rows = [self.encode(t, max_length) for t in texts]
        width = max((len(r) for r in rows), default=2)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int32)  # (B, T)
        mask = np.zeros((len(rows), width), dtype=np.int32)  # (B, T)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        lengths = mask.sum(axis=1, dtype=np.int32)  # (B,)
        return Batch(ids, mask, lengths)
