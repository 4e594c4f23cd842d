"""all-MiniLM-L6-v2 on WebKit: the tokenizer in JavaScriptCore's Pyodide against HF
tokenizers, the model on the CPU backend against sentence-transformers, and values only
JavaScript makes (lone surrogates, typed arrays) refused by name. The test functions are
tests/e2e/test_minilm.py's, collected here with this folder's `app` (the page on ?gpu=none)."""

from __future__ import annotations

from tests.e2e.test_minilm import (  # noqa: F401  (collected here, on WebKit)
    test_embed_refuses_what_javascript_can_send_naming_the_item,
    test_embeddings_match_sentence_transformers,
    test_tokenizer_in_the_browser_equals_hf_tokenizers,
)
from tests.unit.test_tokenizer import hf, model_files  # noqa: F401  (fixtures)
