"""numpy references of the kernels (float64 math): they live in the package
(pybridge/checks/references.py, one copy, also run by the self-test page), re-exported here."""

from __future__ import annotations

from pybridge.checks import rand
from pybridge.checks.references import attention, embed, gelu, layer_norm, layernorm, matmul, pool

__all__ = ["attention", "embed", "gelu", "layer_norm", "layernorm", "matmul", "pool", "rand"]
