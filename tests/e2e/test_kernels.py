"""Every kernel of wgsl/ in the browser (Chrome's Tint compiler, SwiftShader) against the
numpy references: the same cases the native backend runs (tests/cases/kernels.py)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.cases import references
from tests.conftest import ROOT
from tests.unit.test_native_kernels import MATMUL_CASES, MATMUL_VARIANT_CASES, require_features


@pytest.fixture(scope="module")
def page(app):
    app.load_module("kcases", ROOT / "tests" / "cases" / "kernels.py")
    app.py("import pybridge, kcases\nbackend = await pybridge.default_backend()")
    return app


def run(page, call: str) -> np.ndarray:
    r = page.py(f"import base64\nr = await kcases.{call}\n"
                "[base64.b64encode(r.tobytes()).decode(), list(r.shape)]")
    return np.frombuffer(base64.b64decode(r[0]), np.float32).reshape(r[1])


@pytest.mark.parametrize("M, N, K, gelu, f16", MATMUL_CASES)
def test_matmul(page, M, N, K, gelu, f16):
    got = run(page, f"matmul(backend, {M}, {N}, {K}, {gelu}, {f16})")
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op, M, N, K, gelu, f16", MATMUL_VARIANT_CASES)
def test_matmul_variant(page, op, M, N, K, gelu, f16):
    require_features(frozenset(page.py("sorted(backend.features)")), op)
    got = run(page, f"matmul(backend, {M}, {N}, {K}, {gelu}, {f16}, op={op!r})")
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


EMBED_CASES = [(2, 7, 100, 384, False), (3, 33, 1000, 96, True)]
LAYERNORM_CASES = [(3, 384), (17, 1000)]
ATTENTION_CASES = [(2, 9, 12, 32, [9, 4]), (3, 70, 2, 64, [70, 1, 65]), (3, 4, 2, 32, [6, 0, 4])]
POOL_CASES = [(3, 10, 384, [10, 1, 5]), (3, 4, 64, [9, 0, 4])]


@pytest.mark.parametrize("B, T, V, C, f16", EMBED_CASES)
def test_embed(page, B, T, V, C, f16):
    got = run(page, f"embed(backend, {B}, {T}, {V}, {C}, {f16})")
    np.testing.assert_allclose(got, references.embed(B, T, V, C, f16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("R, C", LAYERNORM_CASES)
def test_layernorm(page, R, C):
    np.testing.assert_allclose(run(page, f"layernorm(backend, {R}, {C})"),
                               references.layernorm(R, C), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B, T, heads, D, lengths", ATTENTION_CASES)
def test_attention(page, B, T, heads, D, lengths):
    np.testing.assert_allclose(run(page, f"attention(backend, {B}, {T}, {heads}, {D}, {lengths})"),
                               references.attention(B, T, heads, D, lengths), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B, T, C, lengths", POOL_CASES)
def test_pool(page, B, T, C, lengths):
    np.testing.assert_allclose(run(page, f"pool(backend, {B}, {T}, {C}, {lengths})"),
                               references.pool(B, T, C, lengths), rtol=1e-5, atol=1e-6)


def test_subgroups_are_probed_in_the_browser(page):
    # Tint compiles wgsl/subgroup_probe.wgsl (enable subgroups; and the builtins) and the
    # device's subgroups pair invocations as matmul_splitk_sg needs
    usable, note, features = page.py("[await backend.subgroups_usable(), backend.subgroups_note,"
                                     " sorted(backend.features)]")
    require_features(frozenset(features), "matmul_splitk_sg")
    assert usable is True and note.endswith("invocations, in order"), note
