"""numpy references of the kernels in float64, written from the math each kernel's header states
(not from the kernels, nor from pybridge/cpu.py's numpy twins), from the same inputs as
pybridge.checks.kernels builds. Computed in CPython by the tests and in the page by /selftest."""

from __future__ import annotations

import math

import numpy as np

from pybridge.checks import rand

__all__ = ["attention", "embed", "gelu", "layer_norm", "layernorm", "matmul", "pool"]

_erf = np.vectorize(math.erf)


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def matmul(M: int, N: int, K: int, gelu_: bool = False, f16: bool = False) -> np.ndarray:
    a, b, bias = rand((M, K), 1), rand((N, K), 2, 0.5), rand((N,), 3)
    if f16:
        b = b.astype(np.float16)
    y = a.astype(np.float64) @ b.astype(np.float64).T + bias
    return gelu(y) if gelu_ else y


def layer_norm(x: np.ndarray, gamma, beta, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def embed(B: int, T: int, V: int, C: int, f16: bool = False) -> np.ndarray:
    ids = ((np.arange(B * T, dtype=np.int64) * 7919) % V).astype(np.int32)
    word, pos, typ = rand((V, C), 4), rand((T + 3, C), 5), rand((2, C), 6)
    if f16:
        word, pos, typ = (w.astype(np.float16) for w in (word, pos, typ))
    gamma, beta = rand((C,), 7) + 1, rand((C,), 8)
    t = np.arange(B * T) % T
    x = word[ids].astype(np.float64) + pos[t] + typ[0]
    return layer_norm(x, gamma, beta)


def layernorm(R: int, C: int) -> np.ndarray:
    x, r, gamma, beta = rand((R, C), 9, 3), rand((R, C), 10), rand((C,), 11) + 1, rand((C,), 12)
    return layer_norm(x.astype(np.float64) + r, gamma, beta)


def attention(B: int, T: int, heads: int, D: int, lengths: list[int]) -> np.ndarray:
    H = heads * D
    qkv = rand((B * T, 3 * H), 13, 2).astype(np.float64).reshape(B, T, 3, heads, D)
    out = np.zeros((B, T, heads, D))
    for b in range(B):
        n = min(max(lengths[b], 0), T)  # a length past T covers T keys; 0 keys give zeros
        if n == 0:
            continue
        for h in range(heads):
            q, k, v = qkv[b, :, 0, h], qkv[b, :n, 1, h], qkv[b, :n, 2, h]
            s = q @ k.T / math.sqrt(D)
            p = np.exp(s - s.max(-1, keepdims=True))
            out[b, :, h] = (p / p.sum(-1, keepdims=True)) @ v
    return out.reshape(B * T, H)


def pool(B: int, T: int, C: int, lengths: list[int]) -> np.ndarray:
    x = rand((B * T, C), 14).astype(np.float64).reshape(B, T, C)
    m = np.stack([x[b, :min(max(lengths[b], 1), T)].mean(0) for b in range(B)])  # 1..T tokens
    return m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12)
