"""The data path's CPU side on WebKit (JavaScriptCore): the shared cases of
tests/cases/datapath.py run in the page's worker on the CPU backend (numpy: WebKitGTK has no
WebGPU), also across a growth of the wasm heap; the worker's streaming SHA-256; and weights
streamed from the server by the worker's fetch into numpy memory."""

from __future__ import annotations

import pytest

from pybridge.cpu import CpuBackend
from tests.cases import datapath as cases
from tests.conftest import ROOT
from tests.e2e.test_datapath import (  # noqa: F401  (collected here, on the CPU backend)
    test_streaming_sha256_matches_hashlib,
    test_weights_stream_into_gpu_tensors,
    test_weights_with_a_wrong_hash_leave_nothing_on_the_gpu,
)
from tests.unit.test_native_datapath import SIZES


@pytest.fixture(scope="module")
def page(app):
    app.load_module("cases", ROOT / "tests" / "cases" / "datapath.py")
    name = app.py("import pybridge, cases\n"
                  "backend = await pybridge.default_backend()\n"
                  "backend.name")
    assert name == "cpu"
    return app


@pytest.mark.parametrize("paths", [(None, None), ("naive", "naive")])
def test_roundtrip_every_dtype_and_size_with_exact_copy_counts(page, paths):
    results = page.py(
        f"[await cases.roundtrip(backend, d, s, {paths[0]!r}, {paths[1]!r})"
        f" for d in cases.DTYPES for s in {SIZES!r}]"
    )
    combos = [(d, s) for d in cases.DTYPES for s in SIZES]
    for (dtype, shape), r in zip(combos, results, strict=True):
        where = f"{dtype}{shape} via {paths}"
        assert r["equal"] and r["into_out"], where
        up, down, n = r["copies"].get("upload", {}), r["copies"].get("readback", {}), r["nbytes"]
        if paths == (None, None):  # one CPU copy each way
            assert up == {"view": {"copies": 1, "bytes": n}}, where
            assert down == {"copy": {"copies": 1, "bytes": n}}, where
        else:  # the labelled baseline
            assert up == {"naive": {"copies": 2, "bytes": 2 * n}}, where
            assert down == {"naive": {"copies": 3, "bytes": 3 * n}}, where


def test_roundtrip_across_a_growth_of_the_wasm_heap(page):
    r = page.py(
        "from pybridge.view import wasm_heap_bytes\n"
        "heap0 = wasm_heap_bytes()\n"
        "r = await cases.roundtrip(backend, 'float32', (heap0 // 4,))  # heap0 bytes: it grows\n"
        "[heap0, wasm_heap_bytes(), r['equal'], r['into_out']]"
    )
    heap0, heap1, equal, into_out = r
    assert heap1 > heap0 and equal and into_out


def test_concurrent_uploads_each_land_whole(page):
    r = page.py("await cases.concurrent_uploads(backend, 9, None, 1 << 18)")
    assert r["equal"] == [True] * 9 and r["left"] == 0


def test_tensors_dropped_without_free_release_their_buffers(page):
    assert page.py("await cases.dropped_tensors(backend, 20)") == {
        "after_drops": 0, "plan_ok": True, "after_plan": 0}


def test_non_contiguous_input_is_copied_once_or_refused(page):
    r = page.py("await cases.non_contiguous(backend)")
    assert r["equal"] and r["copies"]["contiguous"]["numpy"]["copies"] == 1
    assert "not C-contiguous and copy=False" in r["refused"]


@pytest.mark.parametrize("what, expected", [
    (w, e.format(backend="cpu", paths=CpuBackend.upload_paths)) for w, e in cases.ERROR_CASES
])
def test_bad_input_gets_a_clear_error_and_leaves_nothing_behind(page, what, expected):
    before = page.py("backend.live_buffers()")
    message = page.py(f"await cases.error_message(backend, {what!r})")
    assert message.startswith(expected), message
    assert page.py("backend.live_buffers()") == before


def test_no_leaks_after_1000_upload_readback_cycles(page):
    proxies0 = page.py("import pybridge_js\npybridge_js.liveProxies()")
    r = page.py("from pybridge.view import wasm_heap_bytes\n"
                "await cases.leak_check(backend, 1000, wasm_heap_bytes)")
    assert r["equal"] and r["buffers"][1] == r["buffers"][0] and r["heap"][1] == r["heap"][0]
    assert page.py("pybridge_js.liveProxies()") == proxies0
