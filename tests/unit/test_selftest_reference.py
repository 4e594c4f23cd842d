"""The self-test page's Python side (pybridge/checks/selftest.py) and what it reads: the stored
reference embeddings (web/selftest-reference.json, written by tools/selftest_reference.py)
recomputed with sentence-transformers, the tests' thresholds, every check on the native and
CPU backends, a wrong value, an exception, an extra copy and a missing feature each reported
in their row, and /selftest served with the site's headers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pybridge import set_default_paths
from pybridge.checks import kernels as package_kernels
from pybridge.checks import references as package_references
from pybridge.checks import selftest
from tests.cases import kernels as case_kernels
from tests.cases import references as case_references
from tests.reference import MODEL_DIR, cosine, need, st_embeddings
from tests.unit.test_native_kernels import MATMUL_KERNELS
from tests.unit.test_native_minilm import MIN_COSINE
from tools import selftest_reference
from tools.server import SECURITY_HEADERS, init

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "web" / "selftest-reference.json"


def test_the_stored_embeddings_are_sentence_transformers(tmp_path_factory):
    sentences, stored = selftest_reference.read(REFERENCE)
    assert sentences == selftest_reference.SENTENCES
    assert stored.shape == (len(sentences), 384) and stored.dtype == np.float32
    fresh = st_embeddings(tmp_path_factory.mktemp("st"), sentences)
    # a drifted file (other sentences, another model or version) fails here; regenerate it
    # with `.venv/bin/python tools/selftest_reference.py`
    np.testing.assert_allclose(stored, fresh, atol=1e-5)
    assert cosine(stored, fresh).min() > 0.99999


def test_the_stored_file_is_small_and_the_page_reads_it_as_the_tool_does():
    assert REFERENCE.stat().st_size < 20_000
    text = REFERENCE.read_text(encoding="utf-8")
    sentences, vectors = selftest.parse_reference(text)
    assert sentences == selftest_reference.read(REFERENCE)[0]
    assert np.array_equal(vectors, selftest_reference.read(REFERENCE)[1])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # unit vectors
    doc = json.loads(text)
    doc["embeddings"] = doc["embeddings"][:-8]  # a truncated file is an error, not a pass
    with pytest.raises(ValueError):
        selftest.parse_reference(json.dumps(doc))


def test_the_page_uses_the_tests_thresholds_and_cases():
    # the thresholds live in the package (the page and the tests use one constant), so the
    # tests pin how strict they may be at least: loosening them fails here
    assert MIN_COSINE["float32"] >= 0.9999 and MIN_COSINE["float16"] >= 0.999, MIN_COSINE
    # every matmul kernel there is, from the kernel files and the variants made of them
    from pybridge.dispatch import KERNEL_DIRS, VARIANTS

    files = {p.stem for d in KERNEL_DIRS if d.is_dir() for p in d.glob("matmul*.wgsl")}
    assert files and sorted(MATMUL_KERNELS) == sorted(files | {op for op in VARIANTS
                                                               if op.startswith("matmul")})
    # one copy of the cases and references: tests/cases re-exports the package's
    assert case_kernels.matmul is package_kernels.matmul and case_kernels.rand is package_kernels.rand
    assert case_references.attention is package_references.attention
    ids = [c["id"] for c in selftest.names()]
    assert len(ids) == len(set(ids))
    for op in MATMUL_KERNELS:  # every matmul kernel, float32 and float16 weights
        assert {i.split()[1] for i in ids if i.split()[0] == op} == {"float32", "float16"}, op


async def test_every_check_passes(backend):
    """Natively, on wgpu-py (lavapipe in CI) and on numpy; the model only on numpy (the
    native backend's model runs in tests/unit/test_native_minilm.py)."""
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    for c in selftest.names():
        if backend.name != "cpu" and c["group"] == "model":
            continue
        r = await selftest.run(c["id"], backend=backend, model=MODEL_DIR, reference=REFERENCE)
        want = "skip" if backend.name == "cpu" and c["id"] == "subgroups probe" else "pass"
        assert r["status"] == want, r
        assert r["ms"] > 0 and r["error"] is None and set(r) == {
            "id", "group", "what", "status", "maxError", "tolerance", "ms", "timings", "detail",
            "error"}


async def test_a_wrong_value_fails_naming_the_first_one(backend, monkeypatch):
    right = package_references.pool
    monkeypatch.setattr(package_references, "pool", lambda *a: right(*a) + 1)
    r = await selftest.run("pool 3x10x384 lengths=[10, 1, 5]", backend=backend)
    assert r["status"] == "fail" and r["maxError"] == pytest.approx(1, abs=1e-3)
    assert r["detail"].startswith("1152 of 1152 values out of tolerance, the first at (0, 0)")


async def test_nan_in_an_output_fails(backend, monkeypatch):
    monkeypatch.setattr(package_references, "layernorm", lambda R, C: np.full((R, C), np.nan))
    r = await selftest.run("layernorm 3x384", backend=backend)
    assert r["status"] == "fail" and r["maxError"] is None
    assert "NaN or infinity" in r["detail"]


async def test_an_exception_is_an_error_row_and_the_next_check_runs(backend, monkeypatch):
    async def boom(*args):
        raise RuntimeError("the kernel exploded")

    monkeypatch.setattr(package_kernels, "embed", boom)
    r = await selftest.run("embed float32 2x7 V=100 C=384", backend=backend)
    assert r["status"] == "error" and r["error"] == "RuntimeError: the kernel exploded"
    assert (await selftest.run("layernorm 3x384", backend=backend))["status"] == "pass"
    with pytest.raises(ValueError, match="no self-test check named 'nope'"):
        await selftest.run("nope", backend=backend)


async def test_a_copy_too_many_fails_the_data_path(backend):
    set_default_paths(upload="naive")  # the labelled baseline: several copies
    try:
        r = await selftest.run("roundtrip int32(64, 64)", backend=backend)
    finally:
        set_default_paths()
    assert r["status"] == "fail" and r["detail"].startswith("upload made {'naive'")


async def test_a_missing_reference_file_is_an_error(backend, tmp_path):
    r = await selftest.run("all-MiniLM-L6-v2 float16", backend=backend, model=MODEL_DIR,
                           reference=tmp_path / "none.json")
    assert r["status"] == "error" and r["error"].startswith("FileNotFoundError")


async def test_a_kernel_needing_a_feature_the_device_lacks_is_skipped(native_backend, monkeypatch):
    monkeypatch.setattr(type(native_backend), "features", property(lambda self: frozenset()))
    for id in ("matmul_splitk_sg float32 35x131x40", "subgroups probe"):
        r = await selftest.run(id, backend=native_backend)
        assert r["status"] == "skip" and r["detail"] == "needs subgroups, which this device lacks"


async def test_the_environment_names_the_device_and_versions(backend):
    env = await selftest.environment(backend)
    assert env["device"] == ("cpu" if backend.name == "cpu" else "gpu")
    assert env["limits"] and isinstance(env["features"], list)
    assert set(env["versions"]) == {"python", "numpy", "pybridge"}  # and pyodide in the browser


@pytest.mark.parametrize("path", ["/selftest", "/selftest.html"])
async def test_selftest_is_served_with_the_site_headers(aiohttp_client, path):
    client = await aiohttp_client(init())
    r = await client.get(path)
    assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert await r.read() == (ROOT / "web" / "selftest.html").read_bytes()
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    assert (await client.get("/selftest-reference.json")).status == 200
    assert (await client.get("/selftest/")).status == 404
