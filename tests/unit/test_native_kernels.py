"""Every kernel of wgsl/ against its numpy reference on the native backend (wgpu-py: Naga
compiler, lavapipe in CI), across shapes that are not multiples of the tiles."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pybridge.native import NativeBackend
from tests.cases import kernels, references

# K % 4 == 0 runs wgsl/matmul.wgsl (K % 8 with float16), other K wgsl/matmul_generic.wgsl
# (few output tiles with such K: wgsl/matmul_rows.wgsl)
MATMUL_SHAPES = [(1, 1, 1), (5, 7, 3), (64, 64, 16), (65, 63, 17), (13, 1152, 384),
                 (130, 384, 1536), (7, 200, 96), (129, 131, 12), (3, 5, 6), (200, 129, 40),
                 (32, 384, 1536), (33, 260, 24), (1100, 1152, 384)]


@pytest.fixture(scope="module")
def backend():
    b = asyncio.run(NativeBackend.create())
    yield b
    b.close()


# float16 weights are stored in pairs along K, so their cases have even K
MATMUL_CASES = [(m, n, k, gelu, False) for m, n, k in MATMUL_SHAPES for gelu in (False, True)]
MATMUL_CASES += [(m, n, k, False, True) for m, n, k in MATMUL_SHAPES if k % 2 == 0]


@pytest.mark.parametrize("M, N, K, gelu, f16", MATMUL_CASES)
async def test_matmul(backend, M, N, K, gelu, f16):
    got = await kernels.matmul(backend, M, N, K, gelu, f16)
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("M, N, K, gelu", [(1100, 1152, 384, False), (1100, 1536, 384, True)])
async def test_matmul_with_native_float16(backend, M, N, K, gelu):
    """The shader-f16 kernel (lavapipe has the feature; SwiftShader does not)."""
    assert "shader-f16" in backend.features, backend.describe()["features"]
    got = await kernels.matmul(backend, M, N, K, gelu, f16=True, shader_f16=True)
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, True), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B, T, V, C", [(1, 1, 5, 8), (2, 7, 100, 384), (3, 33, 1000, 96)])
@pytest.mark.parametrize("f16", [False, True])
async def test_embed(backend, B, T, V, C, f16):
    got = await kernels.embed(backend, B, T, V, C, f16)
    np.testing.assert_allclose(got, references.embed(B, T, V, C, f16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("R, C", [(1, 1), (3, 384), (17, 1000), (64, 129)])
async def test_layernorm(backend, R, C):
    got = await kernels.layernorm(backend, R, C)
    np.testing.assert_allclose(got, references.layernorm(R, C), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B, T, heads, D, lengths", [
    (1, 1, 1, 32, [1]), (2, 9, 12, 32, [9, 4]), (3, 70, 2, 64, [70, 1, 65]),
    (1, 130, 12, 32, [128]),
])
async def test_attention(backend, B, T, heads, D, lengths):
    got = await kernels.attention(backend, B, T, heads, D, lengths)
    np.testing.assert_allclose(got, references.attention(B, T, heads, D, lengths),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B, T, C, lengths", [(1, 1, 8, [1]), (3, 10, 384, [10, 1, 5]),
                                              (2, 40, 1000, [40, 17])])
async def test_pool(backend, B, T, C, lengths):
    got = await kernels.pool(backend, B, T, C, lengths)
    np.testing.assert_allclose(got, references.pool(B, T, C, lengths), rtol=1e-5, atol=1e-6)
