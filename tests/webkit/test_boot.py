"""The page on WebKit (JavaScriptCore): Python + numpy boot in the worker without WebGPU,
the pybridge package imports, and the data path's views are the numpy memory, also after
the wasm heap grows. Tests written for Chromium run here unchanged where they only talk to
the page through `app` (imported below)."""

from __future__ import annotations

from tests.e2e.test_boot import assert_booted_in_order
from tests.e2e.test_boot import (  # noqa: F401  (collected here, on WebKit)
    test_non_contiguous_arrays_are_refused_with_a_clear_error,
    test_python_and_numpy_run_in_the_browser,
    test_the_js_view_is_the_numpy_memory,
)


def test_page_boots_python_numpy_and_pybridge(app):
    s = app.state()
    assert s["state"] == "ready" and s["error"] is None
    assert_booted_in_order(s)
    modules = app.py("import sys, pybridge, pybridge.tokenizer, pybridge.minilm\n"
                     "[pybridge.__version__, pybridge.IN_PYODIDE, 'pybridge.view' in sys.modules]")
    assert modules[1:] == [True, True]


def test_javascriptcore_is_what_the_design_assumes(app):
    """No JSPI (so no run_sync: every GPU wait is `await`); SharedArrayBuffer present in the
    cross-origin isolated page (WebKitGTK hides it unless JSC_useSharedArrayBuffer=1)."""
    page = app.page
    assert page.evaluate("crossOriginIsolated") is True
    assert page.evaluate("typeof SharedArrayBuffer") == "function"
    assert page.evaluate("typeof WebAssembly.Suspending") == "undefined"  # JSPI
    assert app.py("from pyodide.ffi import can_run_sync\ncan_run_sync()") is False


def test_views_are_taken_again_after_the_wasm_heap_grows(app):
    """Growth detaches every older view of the heap; the helpers take a new one per call, so
    an array allocated before the growth is still seen (and written) where numpy has it."""
    r = app.py(
        "import numpy as np\n"
        "from pybridge.view import view_info, wasm_heap_bytes, write_through_view\n"
        "arr = np.arange(64, dtype=np.uint8)\n"
        "before, heap0 = view_info(arr), wasm_heap_bytes()\n"
        "big = np.ones(heap0, dtype=np.uint8)  # (heap0,) more than is free: the heap grows\n"
        "heap1 = wasm_heap_bytes()\n"
        "after = view_info(arr)\n"
        "write_through_view(arr, 7, 77)\n"
        "tail = view_info(big[-16:])\n"
        "r = {'heap': [heap0, heap1], 'before': before, 'after': after, 'tail': tail,\n"
        "     'addr': arr.ctypes.data, 'big_end': big.ctypes.data + big.nbytes,\n"
        "     'a7': int(arr[7])}\n"
        "del big\n"
        "r"
    )
    heap0, heap1 = r["heap"]
    assert heap1 > heap0, "the heap did not grow: the test proves nothing"
    assert r["before"] == r["after"] == {"byteOffset": r["addr"], "byteLength": 64,
                                         "isWasmHeap": True}
    assert r["a7"] == 77  # written through a view taken after the growth
    assert r["tail"]["byteOffset"] + 16 == r["big_end"] <= heap1  # the new memory is viewed


def test_python_restored_from_a_snapshot_answers_as_a_normal_start_on_javascriptcore(app, server):
    """On JavaScriptCore the page's first load makes Python's snapshot and goes on from it
    restored (web/snapshot.js); numpy's compiled parts then answer as after a normal start
    (?snapshot=off). WebKitGTK's automation session empties Cache Storage when the page
    navigates (seen: the entry listed before, none after), so here every load makes its
    snapshot: restoring one stored by an earlier load is tested on Chromium. The session's
    page is reloaded: the tests after this one use a page started normally."""
    code = ("import hashlib, numpy as np\n"
            "m = np.random.default_rng(5).standard_normal((6, 6))\n"
            "hashlib.sha256(np.linalg.inv(m).tobytes()).hexdigest()")
    page = app.page
    made = page.evaluate("pybridge.boot")
    assert made["how"] == "made" and made["bytes"] > 10_000_000, made
    restored = app.py(code)
    page.session.navigate(server.url + "?gpu=none&model=none&snapshot=off")
    assert page.wait_for_state(["ready", "error"]) == "ready", page.evaluate("pybridge.error")
    assert page.evaluate("pybridge.boot.how") == "normal"
    assert app.py(code) == restored
