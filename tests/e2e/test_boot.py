"""The page boots Python + numpy in a worker, gets a WebGPU device and runs a kernel from
Python; the data path's view is really the numpy memory; failures are named on the page."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from tests.e2e.conftest import new_page
from tools.harness import BOOT_TIMEOUT_MS, launch, wait_final


def assert_booted_in_order(s: dict) -> None:
    """The page's state `s`: boot stages in order, each asset the page needed reported done
    (tests/webkit/ checks WebKit's boot with it too)."""
    stages = s["stages"]
    assert list(stages) == ["config", "pyodide", "packages", "ready"]
    assert all(a <= b for a, b in zip(list(stages.values()), list(stages.values())[1:]))
    done = {n for n, a in s["assets"].items() if a["state"] == "done"}
    assert {"pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json"} <= done
    assert any(n.startswith("numpy-2.0.2-") for n in done)
    assert any(n.startswith("pybridge-") for n in done)


def test_page_boots_and_shows_the_kernel_result(app):
    s = app.state()
    assert s["state"] == "ready" and s["error"] is None
    r = s["result"]
    assert r["ok"] is True and r["maxAbsError"] <= 1e-5
    assert r["head"] == pytest.approx(r["expectedHead"], rel=1e-6, abs=1e-6)
    assert_booted_in_order(s)
    # what a person sees
    page = app.page
    assert page.locator("#state").inner_text() == "Ready"
    assert page.locator("#result-verdict").inner_text() == "matches numpy"
    assert page.locator("#error").is_hidden()
    assert "Python 3.12" in page.locator("#versions").inner_text()
    assert page.errors == []


def test_python_and_numpy_run_in_the_browser(app):
    info = app.py(
        "import sys, numpy as np\n"
        "a = np.arange(12, dtype=np.float64).reshape(3, 4)\n"
        "[list(sys.version_info[:2]), np.__version__, (a @ a.T).tolist(), sys.platform]"
    )
    version, np_version, gram, platform = info
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert version == [3, 12] and np_version == "2.0.2" and platform == "emscripten"
    assert np.array_equal(np.array(gram), a @ a.T)


def test_the_js_view_is_the_numpy_memory(app):
    r = app.py(
        "import numpy as np\n"
        "from pybridge.view import view_info, write_through_view\n"
        "arr = np.arange(64, dtype=np.uint8)\n"
        "whole, tail = view_info(arr), view_info(arr[8:])\n"
        "write_through_view(arr, 5, 201)\n"
        "write_through_view(arr[8:], 0, 202)\n"
        "{'whole': whole, 'tail': tail, 'addr': arr.ctypes.data, 'a5': int(arr[5]), 'a8': int(arr[8])}"
    )
    assert r["whole"]["isWasmHeap"] is True
    assert r["whole"]["byteOffset"] == r["addr"] and r["whole"]["byteLength"] == 64
    assert r["tail"]["byteOffset"] == r["addr"] + 8 and r["tail"]["byteLength"] == 56
    assert r["a5"] == 201 and r["a8"] == 202  # a write through the view shows in numpy


def test_non_contiguous_arrays_are_refused_with_a_clear_error(app):
    with pytest.raises(Exception, match="not C-contiguous"):
        app.py(
            "import numpy as np\nfrom pybridge.view import view_info\n"
            "view_info(np.zeros((4, 4), dtype=np.float32)[:, 1])"
        )


@pytest.mark.parametrize("n", [1, 255, 256, 257, 100_003])
def test_axpy_kernel_equals_numpy(app, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    alpha = -1.75
    b64 = lambda a: base64.b64encode(a.tobytes()).decode()  # noqa: E731
    got_b64 = app.py(
        "import base64, numpy as np\n"
        "from pybridge.backend import default_backend\nfrom pybridge.demo import axpy\n"
        f"x = np.frombuffer(base64.b64decode('{b64(x)}'), dtype=np.float32)\n"
        f"y = np.frombuffer(base64.b64decode('{b64(y)}'), dtype=np.float32)\n"
        f"out = await axpy(await default_backend(), {alpha}, x, y)\n"
        "base64.b64encode(out.tobytes()).decode()"
    )
    got = np.frombuffer(base64.b64decode(got_b64), dtype=np.float32)
    np.testing.assert_allclose(got, alpha * x + y, rtol=1e-6, atol=1e-6)


def test_without_webgpu_the_page_says_why_and_answers_on_the_cpu(playwright_instance, server,
                                                                   guard):
    """Chromium without an adapter: the page says what is missing and what would have it,
    then boots Python anyway and runs the kernel self-check and the demo model on numpy
    (pybridge.cpu), labelled as such, with the answer a GPU gives (the model's own tests
    check it against sentence-transformers)."""
    browser = launch(playwright_instance, webgpu=False)  # Chromium on Linux: no adapter
    try:
        page = new_page(browser, server, guard)
        page.goto(server.url)
        notice = page.locator("#notice")
        notice.wait_for()
        text = notice.inner_text()
        assert "no usable GPU adapter" in text and "--enable-unsafe-webgpu" in text
        assert "Safari" in text and "CPU" in text
        assert wait_final(page) == "ready"
        assert page.evaluate("pybridge.device") == "cpu"
        assert page.evaluate("pybridge.result.ok") is True
        assert page.evaluate("pybridge.gpu.backend") == "cpu"
        assert "no usable GPU adapter" in page.evaluate("pybridge.gpu.adapter.description")
        assert not page.locator("#error").is_visible()
        page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=300_000)
        assert page.evaluate("pybridge.error") is None
        ranked = page.evaluate("pybridge.lastSearch.ranked")
        assert ranked[0]["text"].startswith("Boil water")  # "How do I cook pasta?"
        assert "the CPU (numpy, no WebGPU)" in page.locator("#model-panel").inner_text()
    finally:
        browser.close()


def test_browser_without_navigator_gpu(fresh_page, server):
    fresh_page.add_init_script("delete Navigator.prototype.gpu")
    fresh_page.goto(server.url + "?model=none")
    assert wait_final(fresh_page) == "ready"
    assert "navigator.gpu is missing" in fresh_page.locator("#notice-message").inner_text()
    assert fresh_page.evaluate("pybridge.result.ok") is True


@pytest.mark.parametrize("where", ["/", "/selftest"])
def test_a_worker_without_webgpu_falls_back_to_the_cpu_and_says_so(fresh_page, server, where):
    """Found in review: the page checks WebGPU on its main thread, but the device is made in
    the worker; where only the worker has none, the page failed ("The GPU kernel failed")
    instead of running on numpy as it does when the page itself has none."""
    def without_gpu(route):
        response = route.fetch()
        route.fulfill(response=response, body="delete WorkerNavigator.prototype.gpu;\n" + response.text())

    fresh_page.context.route("**/worker.js", without_gpu)
    fresh_page.goto(server.url.rstrip("/") + where + "?model=none&only=pool")
    if where == "/":
        assert wait_final(fresh_page) == "ready", fresh_page.evaluate("pybridge.error")
        assert fresh_page.evaluate("pybridge.result.ok") is True
    else:
        fresh_page.wait_for_selector("body[data-state=done], body[data-state=error]",
                                     timeout=BOOT_TIMEOUT_MS)
        assert fresh_page.evaluate("pybridge.report.backend") == "cpu", \
            fresh_page.evaluate("pybridge.report.error")
        assert fresh_page.evaluate("document.body.dataset.result") == "pass"
    assert fresh_page.evaluate("pybridge.device") == "cpu"
    assert "navigator.gpu is missing" in fresh_page.locator("#notice-message").inner_text()
    why = fresh_page.evaluate("pybridge.noWebGPU")  # the page has WebGPU: no browser advice
    assert why.startswith("WebGPU works on this page but not in its worker") and "Chrome" not in why


def test_gpu_none_runs_on_the_cpu_where_webgpu_works(fresh_page, server):
    fresh_page.goto(server.url + "?gpu=none&model=none")
    assert wait_final(fresh_page) == "ready"
    assert fresh_page.evaluate("pybridge.device") == "cpu"
    assert "?gpu=none" in fresh_page.locator("#notice-message").inner_text()
    assert fresh_page.evaluate("pybridge.gpu.backend") == "cpu"
    assert fresh_page.evaluate("pybridge.run('import pybridge; (await pybridge.default_backend()).name')") == "cpu"


@pytest.mark.parametrize("asset", ["pyodide.asm.wasm", "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl"])
def test_a_failed_asset_is_named_on_the_page(fresh_page, server, asset):
    fresh_page.route(re.compile(re.escape(asset) + "$"), lambda route: route.fulfill(status=404))
    fresh_page.goto(server.url)
    assert wait_final(fresh_page) == "error"
    text = fresh_page.locator("#error").inner_text()
    assert asset in text and "404" in text
    assert fresh_page.evaluate(f"pybridge.assets[{asset!r}].state") == "failed"


def test_the_page_runs_under_its_content_security_policy(browser, server, guard):
    # the policy as sent, enforced: no inline script or style, no eval, only this origin;
    # the page boots, compiles its wasm and answers the demo search anyway. Waited for with
    # selectors (wait_for_function with a string would be eval). Violations in the page show
    # on its console; one in the worker would stop the boot or the search.
    page = new_page(browser, server, guard, enforce_csp=True)
    violations = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    try:
        response = page.goto(server.url)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self' 'wasm-unsafe-eval'" in csp and "unsafe-inline" not in csp
        assert "'unsafe-eval'" not in csp.replace("'wasm-unsafe-eval'", "")
        page.wait_for_selector("body[data-state=ready]", timeout=BOOT_TIMEOUT_MS)
        page.wait_for_selector("#ranked li", timeout=300_000)  # the model answered a search
        assert page.locator("#error").is_hidden()
        assert violations == [] and page.errors == []
    finally:
        page.context.close()


def test_call_passes_values_to_python_functions(app):
    # sync and async functions; arguments as values (a list, a dict, text that is not code)
    r = app.page.evaluate("""async () => [
        await pybridge.call("builtins", "len", [[1, 2, 3]]),
        await pybridge.call("json", "dumps", [{a: [1, "x"]}], {sort_keys: true}),
        await pybridge.call("builtins", "str", ['")); import os; ("']),
        await pybridge.call("asyncio", "sleep", [0, "done"]),
    ]""")
    assert r == [3, '{"a": [1, "x"]}', '")); import os; ("', "done"]
    with pytest.raises(Exception, match="not a Python module and function name: os; x.y"):
        app.page.evaluate("pybridge.call('os; x', 'y')")
    # a Python error reaches the page as "Type: message", the traceback only in the console
    err = app.page.evaluate("pybridge.call('builtins', 'int', ['x']).catch((e) => e.message)")
    assert err == "ValueError: invalid literal for int() with base 10: 'x'"


def test_a_bad_limits_profile_is_named_and_ignored_without_a_gpu(fresh_page, server):
    """Found in review: ?limits=bogus failed as "The GPU kernel failed", and on the CPU
    backend (where no profile applies) too."""
    fresh_page.goto(server.url + "?model=none&limits=bogus")
    assert wait_final(fresh_page) == "error"
    assert fresh_page.locator("#error-title").inner_text() == "Bad ?limits= in the address"
    assert "must be one of adapter, safari, default" in fresh_page.locator("#error").inner_text()
    fresh_page.goto(server.url + "?model=none&gpu=none&limits=bogus")
    assert wait_final(fresh_page) == "ready"
    assert "?limits= applies to a GPU only" in fresh_page.locator("#notice").inner_text()


def test_an_error_that_escapes_the_worker_ends_pending_calls(fresh_page, server):
    """Found in review: only a "result" message settled a call, so after an error escaped the
    worker every pending call waited forever (the self-test page hung). Now each pending call
    and each later one is rejected with the worker's error, and the page says it failed."""
    fresh_page.goto(server.url + "?model=none&gpu=none")
    assert wait_final(fresh_page) == "ready"
    r = fresh_page.evaluate("""async () => {
        const pending = pybridge.run("import asyncio\\nawait asyncio.sleep(20)\\n'answered'");
        await pybridge.run(
            "import js\\nfrom pyodide.ffi import create_proxy\\n" +
            "def boom():\\n    raise RuntimeError('boom outside any call')\\n" +
            "js.setTimeout(create_proxy(boom), 300)");
        const t0 = performance.now();
        const first = await pending.then((v) => v, (e) => e.message);
        const later = await pybridge.run("1").then((v) => v, (e) => e.message);
        await new Promise((done) => setTimeout(done, 0)); // the page's own onerror has run
        return { first, later, ms: performance.now() - t0, state: pybridge.state };
    }""")
    assert "Python's worker failed" in r["first"] and "boom outside any call" in r["first"], r
    assert r["later"] == r["first"] and r["ms"] < 10_000, r
    assert r["state"] == "error"
    assert fresh_page.locator("#error-title").inner_text() == "Python's worker failed"


def test_an_error_that_escapes_the_worker_stops_the_self_test(fresh_page, server):
    """Found in review: /selftest's loop went on after the worker failed, recorded every
    remaining check as an error row and ended "done" with a result."""
    fresh_page.goto(server.url + "selftest?gpu=none&only=pool,MiniLM")
    fresh_page.wait_for_function("pybridge.state === 'running'", timeout=BOOT_TIMEOUT_MS)
    fresh_page.evaluate("() => { pybridge.run('import js\\nfrom pyodide.ffi import create_proxy\\n"
                        "def boom():\\n    raise RuntimeError(\\'boom mid-run\\')\\n"
                        "js.setTimeout(create_proxy(boom), 0)').catch(() => {}); }")
    fresh_page.wait_for_selector("body[data-state=done], body[data-state=error]",
                                 timeout=BOOT_TIMEOUT_MS)
    r = fresh_page.evaluate("({state: pybridge.state, checks: pybridge.report.checks.length, "
                            "result: document.body.dataset.result || null, error: pybridge.report.error})")
    assert r["state"] == "error" and r["result"] is None, r
    assert r["checks"] < 4 and "boom mid-run" in r["error"], r
    assert fresh_page.locator("#error-title").inner_text() == "Python's worker failed"
