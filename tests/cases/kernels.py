"""Kernel cases shared by both backends and the self-test page: they live in the package
(pybridge/checks/kernels.py, one copy), re-exported here for the tests. tests/e2e ships this
file's source to the page, where the same names come from the installed wheel."""

from __future__ import annotations

from pybridge.checks import rand
from pybridge.checks.kernels import as_words, attention, embed, layernorm, matmul, pool

__all__ = ["as_words", "attention", "embed", "layernorm", "matmul", "pool", "rand"]
