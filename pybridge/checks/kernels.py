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


async def _run(backend: Backend, op: str, inputs: list[np.ndarray], params: np.ndarray,
               out_shape: tuple[int, ...], grid: tuple[int, int, int],
               constants: dict | None = None) -> np.ndarray:
    """Upload `inputs`, run `op` on them, `params` and a new float32 output, and return the
    output's values. Every tensor made is freed whatever fails, an upload or the allocation
    included (/selftest goes on after a failure, so a leak there would add up)."""
    tensors = []
    try:
        for x in inputs:
            tensors.append(await backend.upload(x))
        out = await backend.allocate(out_shape, np.float32)
        tensors.append(out)
        await backend.dispatch(op, [*tensors[:-1], params, out], grid, constants)
        return await out.numpy()
    finally:
        for t in tensors:
            t.free()


async def matmul(backend: Backend, M: int, N: int, K: int, gelu: bool = False,
                 f16: bool = False, shader_f16: bool = False, op: str | None = None,
                 tile: tuple[int, int] | None = None) -> np.ndarray:
    """C = act(A @ B.T + bias) by the kernel matmul_plan picks or, given `op`, by that kernel
    (a variant of wgsl/matmul.wgsl or matmul_generic) on its own grid (of `tile` (columns,
    rows) per workgroup where given)."""
    a, b, bias = rand((M, K), 1), rand((N, K), 2, 0.5), rand((N,), 3)
    if op is None:
        op, grid, constants = matmul_plan(M, N, K, f16, shader_f16)
    else:
        (cols, rows), constants = tile or matmul_tile(op), {"B_F16": f16}
        grid = (-(-N // cols), -(-M // rows), 1)
    return await _run(backend, op, [a, as_words(b, f16), bias], pack_params(M, N, K), (M, N),
                      grid, {"GELU": gelu, **constants})


async def embed(backend: Backend, B: int, T: int, V: int, C: int, f16: bool = False) -> np.ndarray:
    ids = ((np.arange(B * T, dtype=np.int64) * 7919) % V).astype(np.int32)  # (B*T,)
    word, pos, typ = rand((V, C), 4), rand((T + 3, C), 5), rand((2, C), 6)
    gamma, beta = rand((C,), 7) + 1, rand((C,), 8)
    return await _run(backend, "embed", [ids, as_words(word, f16), as_words(pos, f16),
                                         as_words(typ, f16), gamma, beta],
                      pack_params(T, C, 1e-12), (B * T, C), (B * T, 1, 1), {"TABLE_F16": f16})


async def layernorm(backend: Backend, R: int, C: int) -> np.ndarray:
    x, r, gamma, beta = rand((R, C), 9, 3), rand((R, C), 10), rand((C,), 11) + 1, rand((C,), 12)
    return await _run(backend, "layernorm", [x, r, gamma, beta], pack_params(R, C, 1e-12),
                      (R, C), (R, 1, 1))


async def attention(backend: Backend, B: int, T: int, heads: int, D: int,
                    lengths: list[int]) -> np.ndarray:
    H = heads * D
    qkv = rand((B * T, 3 * H), 13, 2)
    return await _run(backend, "attention", [qkv, np.array(lengths, np.int32)],
                      pack_params(T, H, heads, float(D) ** -0.5), (B * T, H),
                      (-(-T // 64), heads, B), {"HEAD_DIM": D})


async def pool(backend: Backend, B: int, T: int, C: int, lengths: list[int]) -> np.ndarray:
    x = rand((B * T, C), 14)
    return await _run(backend, "pool", [x, np.array(lengths, np.int32)], pack_params(T, C),
                      (B, C), (B, 1, 1))
