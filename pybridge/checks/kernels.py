"""Kernel cases: each builds deterministic inputs with `rand`, runs one kernel on a backend and
returns its output as a numpy array; pybridge.checks.references computes the same from the same
inputs in float64. Used by the tests on every backend (tests/cases/kernels.py re-exports them)
and by the self-test page (pybridge.checks.selftest).
"""

from __future__ import annotations

import numpy as np

from pybridge.backend import Backend
from pybridge.checks import rand
from pybridge.dispatch import matmul_plan, matmul_tile, pack_params

__all__ = ["as_words", "attention", "embed", "layernorm", "matmul", "pool", "rand"]


def as_words(w: np.ndarray, f16: bool) -> np.ndarray:
    """A matrix as the u32 words the kernels read: f32 bits, or f16 pairs."""
    return (w.astype(np.float16) if f16 else w.astype(np.float32)).reshape(-1).view(np.uint32)


async def matmul(backend: Backend, M: int, N: int, K: int, gelu: bool = False,
                 f16: bool = False, shader_f16: bool = False, op: str | None = None,
                 tile: tuple[int, int] | None = None) -> np.ndarray:
    """C = act(A @ B.T + bias) by the kernel matmul_plan picks or, given `op`, by that kernel
    (a variant of wgsl/matmul.wgsl or matmul_generic) on its own grid (of `tile` (columns,
    rows) per workgroup where given)."""
    a, b, bias = rand((M, K), 1), rand((N, K), 2, 0.5), rand((N,), 3)
    tensors = [await backend.upload(a), await backend.upload(as_words(b, f16)),
               await backend.upload(bias)]
    out = await backend.allocate((M, N), np.float32)
    try:
        if op is None:
            op, grid, constants = matmul_plan(M, N, K, f16, shader_f16)
        else:
            (cols, rows), constants = tile or matmul_tile(op), {"B_F16": f16}
            grid = (-(-N // cols), -(-M // rows), 1)
        await backend.dispatch(op, [*tensors, pack_params(M, N, K), out], grid,
                               {"GELU": gelu, **constants})
        return await out.numpy()
    finally:
        for t in (*tensors, out):
            t.free()


async def embed(backend: Backend, B: int, T: int, V: int, C: int, f16: bool = False) -> np.ndarray:
    ids = ((np.arange(B * T, dtype=np.int64) * 7919) % V).astype(np.int32)  # (B*T,)
    word, pos, typ = rand((V, C), 4), rand((T + 3, C), 5), rand((2, C), 6)
    gamma, beta = rand((C,), 7) + 1, rand((C,), 8)
    tensors = [await backend.upload(x) for x in (ids, as_words(word, f16), as_words(pos, f16),
                                                 as_words(typ, f16), gamma, beta)]
    out = await backend.allocate((B * T, C), np.float32)
    try:
        await backend.dispatch("embed", [*tensors, pack_params(T, C, 1e-12), out],
                               (B * T, 1, 1), {"TABLE_F16": f16})
        return await out.numpy()
    finally:
        for t in (*tensors, out):
            t.free()


async def layernorm(backend: Backend, R: int, C: int) -> np.ndarray:
    x, r, gamma, beta = rand((R, C), 9, 3), rand((R, C), 10), rand((C,), 11) + 1, rand((C,), 12)
    tensors = [await backend.upload(v) for v in (x, r, gamma, beta)]
    out = await backend.allocate((R, C), np.float32)
    try:
        await backend.dispatch("layernorm", [*tensors, pack_params(R, C, 1e-12), out], (R, 1, 1))
        return await out.numpy()
    finally:
        for t in (*tensors, out):
            t.free()


async def attention(backend: Backend, B: int, T: int, heads: int, D: int,
                    lengths: list[int]) -> np.ndarray:
    H = heads * D
    qkv = rand((B * T, 3 * H), 13, 2)
    tensors = [await backend.upload(qkv), await backend.upload(np.array(lengths, np.int32))]
    out = await backend.allocate((B * T, H), np.float32)
    try:
        await backend.dispatch("attention", [*tensors, pack_params(T, H, heads, float(D) ** -0.5),
                                             out], (-(-T // 64), heads, B), {"HEAD_DIM": D})
        return await out.numpy()
    finally:
        for t in (*tensors, out):
            t.free()


async def pool(backend: Backend, B: int, T: int, C: int, lengths: list[int]) -> np.ndarray:
    x = rand((B * T, C), 14)
    tensors = [await backend.upload(x), await backend.upload(np.array(lengths, np.int32))]
    out = await backend.allocate((B, C), np.float32)
    try:
        await backend.dispatch("pool", [*tensors, pack_params(T, C), out], (B, 1, 1))
        return await out.numpy()
    finally:
        for t in (*tensors, out):
            t.free()
