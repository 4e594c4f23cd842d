"""Checks of pybridge against independent references, shipped in the wheel so the page runs
them too: one copy for the tests (tests/cases/ re-exports them) and for the self-test page.

    kernels     kernel cases: deterministic inputs -> one kernel on a backend -> numpy
    references  the same computations in float64 numpy, written from the math (not from the
                kernels, nor from pybridge/cpu.py's numpy twins)
    selftest    what /selftest runs in the page: every kernel against its reference, the data
                path's copy counts, MiniLM against stored sentence-transformers embeddings

`rand` (below) builds the inputs both sides start from.
"""

from __future__ import annotations

import numpy as np


def rand(shape, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Deterministic float32 in [-scale, scale): the same in every numpy version."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64) + np.uint64(seed * 7919 + 1)
    x = (i * np.uint64(2654435761) + np.uint64(seed)) % np.uint64(1 << 32)
    return ((x.astype(np.float64) / 2**32 * 2 - 1) * scale).astype(np.float32).reshape(shape)
