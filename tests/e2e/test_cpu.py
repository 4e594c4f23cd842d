"""The page without a GPU (?gpu=none, as in a browser without WebGPU): every kernel and the
model run on numpy inside Pyodide (pybridge.cpu; Pyodide's numpy has no BLAS), against the
same references as on the GPU: the kernels' numpy references in float64, the embeddings of
sentence-transformers run natively."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cases import references
from tests.conftest import ROOT
from tests.e2e.conftest import new_page
from tests.e2e.test_kernels import run
from tests.e2e.test_minilm import test_embeddings_match_sentence_transformers as embeddings_match
from tools.harness import App, wait_final


@pytest.fixture(scope="module")
def cpu_app(browser, server, guard):
    page = new_page(browser, server, guard)
    page.goto(server.url + "?gpu=none&model=none")
    state = wait_final(page)
    assert state == "ready", f"page ended in state {state!r}: {page.evaluate('pybridge.error')}"
    app = App(page)
    app.load_module("kcases", ROOT / "tests" / "cases" / "kernels.py")
    app.py("import pybridge, kcases\nbackend = await pybridge.default_backend()")
    assert app.py("backend.name") == "cpu"
    yield app
    page.context.close()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_embeddings_on_the_cpu_match_sentence_transformers(cpu_app, tmp_path_factory, dtype):
    embeddings_match(cpu_app, tmp_path_factory, dtype)


# one case of every kernel, off its GPU tiles; matmul through every op name the CPU takes
@pytest.mark.parametrize("op, M, N, K, gelu, f16", [
    (op, 37, 70, 24, gelu, f16) for op in ("matmul_splitk", "matmul_cpu", "matmul_generic")
    for gelu, f16 in ((False, False), (True, True))])
def test_matmul(cpu_app, op, M, N, K, gelu, f16):
    got = run(cpu_app, f"matmul(backend, {M}, {N}, {K}, {gelu}, {f16}, op={op!r})")
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


def test_the_other_kernels(cpu_app):
    for call, want, atol in [
        ("embed(backend, 3, 33, 1000, 96, True)", references.embed(3, 33, 1000, 96, True), 1e-4),
        ("layernorm(backend, 17, 1000)", references.layernorm(17, 1000), 1e-4),
        ("attention(backend, 3, 70, 2, 64, [70, 1, 65])",
         references.attention(3, 70, 2, 64, [70, 1, 65]), 1e-5),
        ("pool(backend, 3, 9, 384, [9, 1, 4])", references.pool(3, 9, 384, [9, 1, 4]), 1e-6),
    ]:
        np.testing.assert_allclose(run(cpu_app, call), want, rtol=1e-4, atol=atol, err_msg=call)


def test_one_copy_each_way_and_nothing_left(cpu_app):
    r = cpu_app.py(
        "import numpy as np\na = np.arange(1001, dtype=np.float32)\n"
        "before = backend.live_buffers()\npybridge.reset_stats()\n"
        "t = await backend.upload(a)\nback = await t.numpy()\nt.free()\n"
        "{'equal': bool((back == a).all()), 'stats': pybridge.stats(),"
        " 'left': backend.live_buffers() - before}")
    assert r["equal"] and r["left"] == 0
    assert r["stats"] == {"upload": {"view": {"copies": 1, "bytes": 4004}},
                          "readback": {"copy": {"copies": 1, "bytes": 4004}}}


def test_a_kernel_without_a_numpy_twin_is_named(cpu_app):
    r = cpu_app.py(
        "import numpy as np\nx = await backend.upload(np.zeros(256, np.uint32))\n"
        "try:\n    await backend.dispatch('subgroup_probe', [x], (1, 1, 1))\n    r = 'ran'\n"
        "except Exception as e:\n    r = f'{type(e).__name__}: {e}'\nfinally:\n    x.free()\nr")
    assert r.startswith("GpuValidationError: dispatch subgroup_probe:") and "numpy twin" in r
