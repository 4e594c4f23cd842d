"""The default page in a browser without WebGPU (WebKitGTK: navigator.gpu does not exist):
it says so, boots Python anyway and answers the demo's search with the model on numpy."""

from __future__ import annotations

from tests.webkit.conftest import FINAL

NOTICE = "!document.querySelector('#notice').hidden && document.querySelector('#notice').innerText"


def test_without_webgpu_the_page_says_why_and_answers_on_the_cpu(fresh_page, server):
    page = fresh_page
    page.session.navigate(server.url)  # the default page: float16 model, semantic search
    has_webgpu = page.evaluate("!!navigator.gpu")  # Safari 26: yes; WebKitGTK: no
    if not has_webgpu:
        text = page.wait_for(NOTICE)
        assert "navigator.gpu is missing" in text and "CPU" in text
    assert page.wait_for_state(FINAL) == "ready", page.evaluate("pybridge.error")
    assert page.evaluate("pybridge.device") == ("gpu" if has_webgpu else "cpu")
    assert page.evaluate("pybridge.result.ok") is True  # the kernel self-check
    last = page.wait_for("pybridge.lastSearch || (pybridge.error && {error: pybridge.error})",
                         timeout_s=300)
    assert "error" not in last, last
    assert last["ranked"][0]["text"].startswith("Boil water")  # "How do I cook pasta?"
    if not has_webgpu:
        panel = page.evaluate("document.querySelector('#model-panel').innerText")
        assert "the CPU (numpy, no WebGPU)" in panel
    r = page.evaluate("(q) => pybridge.search(q, ['Boil water for ten minutes.', "
                      "'Python is a programming language.'])", "computers and programming")
    assert r["ranked"][0]["text"].startswith("Python")
    assert page.session.errors() == []
