"""Faults while loading and running, in the page: corrupted and truncated files, a connection
that drops in the middle of the weights, a server that dies, a GPU lost in the middle of a
search.

The module's server is tests/e2e/fault_server.py: the dev server, plus /faulty/<mode>/<path>
serving <path> with a fault (see that file). Corrupted files are served by Playwright routes
in place of the real ones (Range requests answered from the corrupted bytes too).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from pybridge.weights import header_length, parse_header
from tools.harness import App, start_server, wait_final
from tools.server import MIME_TYPES

from .conftest import Guard, new_page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
MODEL = SITE / "models" / "all-MiniLM-L6-v2"
WEIGHTS = MODEL / "model-f16.safetensors"
FAULT_SERVER = ROOT / "tests" / "e2e" / "fault_server.py"


@pytest.fixture(scope="module")
def server(test_data):
    srv = start_server({"/test-data/": test_data}, script=FAULT_SERVER)
    yield srv
    srv.stop()


def pyodide_file(pattern: str) -> Path:
    config = json.loads((SITE / "config.json").read_text())
    [path] = (SITE / config["indexURL"]).glob(pattern)
    return path


BOOT_FILES = ["config.json", "pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm",
              "python_stdlib.zip", "pyodide-lock.json", "numpy-*.whl", "pybridge-*.whl"]
MODEL_FILES = ["manifest.json", "vocab.txt", "model-f16.safetensors"]


def corrupt(data: bytes, fault: str) -> bytes:
    if fault == "truncated":
        return data[: len(data) // 2]
    i = 0 if data[:1] == b"{" else len(data) // 2  # JSON: break it (a digit could stay valid)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def serve_bytes(route, data: bytes, content_type: str) -> None:
    """Answer a request from `data` as a server would, Range requests included."""
    headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", route.request.headers.get("range", ""))
    if not m:
        route.fulfill(status=200, headers=headers, body=data)
        return
    start = int(m[1])
    end = min(int(m[2]) + 1 if m[2] else len(data), len(data))
    if start >= len(data):
        route.fulfill(status=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
        return
    route.fulfill(status=206, body=data[start:end], headers={
        **headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})


TRUNCATED = ["config.json", "pyodide.asm.wasm", "numpy-*.whl", "model-f16.safetensors"]


@pytest.mark.parametrize("pattern, fault", [(p, "bit-flipped") for p in BOOT_FILES + MODEL_FILES]
                         + [(p, "truncated") for p in TRUNCATED])
def test_a_corrupted_file_is_named_on_the_page(fresh_page, server, pattern, fault):
    # Before config.json carried every file's sha256: a bit flipped in python_stdlib.zip or
    # pyodide.asm.wasm booted silently (or failed later, unnamed); a corrupted vocab.txt made
    # a wrong tokenizer; a corrupted manifest.json or config.json failed as a raw SyntaxError.
    path = (SITE / pattern if pattern == "config.json" else
            MODEL / pattern if pattern in MODEL_FILES else pyodide_file(pattern))
    bad = corrupt(path.read_bytes(), fault)
    ctype = MIME_TYPES.get(path.suffix, "application/octet-stream")
    fresh_page.route(re.compile(re.escape("/" + path.name) + r"(\?.*)?$"),
                     lambda route: serve_bytes(route, bad, ctype))
    fresh_page.goto(server.url)
    if pattern in BOOT_FILES:
        assert wait_final(fresh_page) == "error"
    else:  # Python boots; the model fails to load
        fresh_page.wait_for_function("['error', 'ready'].includes(pybridge.model)",
                                     timeout=300_000)
        assert fresh_page.evaluate("pybridge.model") == "error"
    text = fresh_page.locator("#error").inner_text()
    assert path.name in text, text
    assert re.search(r"sha256|truncat|corrupt|tensors end|invalid|JSON", text), text


def native_tensor_at(offset: int) -> tuple[str, np.ndarray]:
    """The tensor of model-f16.safetensors holding file byte `offset`, read natively."""
    data = WEIGHTS.read_bytes()
    n = header_length(data[:8])
    header = parse_header(data[8:8 + n], len(data))
    [t] = [t for t in header.tensors if t.begin <= offset < t.end]
    return t.name, np.frombuffer(data[t.begin:t.end], t.dtype.numpy).reshape(t.shape)


LOAD = """
import json, time, pybridge
from pybridge import weights
backend = await pybridge.default_backend()
def live():  # buffers, less the MAP_READ buffers kept for reuse by readbacks
    return backend.live_buffers() - len(backend._read_pool)
before = live()
t0 = time.perf_counter()
try:
    tensors = await weights.load_safetensors(URL, backend, sha256=SHA)
    r = {'ok': True, 'stream': dict(weights.last_stream)}
    r['tensor'] = (await tensors[NAME].numpy()).tobytes().hex()
    for t in tensors.values():
        t.free()
except Exception as e:
    r = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
r['seconds'] = time.perf_counter() - t0
r['leaked'] = live() - before
r
"""


def load_weights(app: App, url: str, name: str = "") -> dict:
    sha = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    return app.py(f"URL, SHA, NAME = {url!r}, {sha!r}, {name!r}\n" + LOAD)


def fault_log(app: App) -> list[dict]:
    return app.page.evaluate("fetch('/faulty-log').then((r) => r.json())")


def test_a_dropped_connection_resumes_with_a_range_request(app):
    # the connection resets after 3 MB of the 45 MB weights: the download goes on from where
    # it stopped (one Range request), the file's sha256 holds, and the tensor across the cut
    # equals the file's bytes. Before: "network error", and the load failed.
    cut = 3_000_000
    name, expected = native_tensor_at(cut)
    r = load_weights(app, f"/faulty/drop-once-{cut}/models/all-MiniLM-L6-v2/{WEIGHTS.name}",
                     name)
    assert r["ok"], r
    assert r["stream"]["resumes"] == 1 and r["stream"]["bytes"] == WEIGHTS.stat().st_size
    assert bytes.fromhex(r["tensor"]) == expected.tobytes()
    body = [e for e in fault_log(app) if e["path"].endswith(WEIGHTS.name)
            and (e["range"] is None or not e["range"].startswith("bytes=0-"))
            and e["range"] != f"bytes=8-{7 + header_length(WEIGHTS.read_bytes()[:8])}"]
    assert [e["sent"] for e in body] == [cut, "whole"], body
    start = int(body[1]["range"].removeprefix("bytes=").rstrip("-"))
    # resumed from what had arrived, not from 0 (a reset discards what the browser had not
    # read yet, so under load that can be well short of the cut)
    assert 0 < start <= cut
    assert r["leaked"] == 0


LOAD_MODEL = """
import pybridge
from pybridge import weights
from pybridge.minilm import MiniLM
backend = await pybridge.default_backend()
before = backend.live_buffers() - len(backend._read_pool)
try:
    model = await MiniLM.load('/models/all-MiniLM-L6-v2/', dtype='float16', backend=backend)
    model.free()
    r = {'ok': True}
except Exception as e:
    r = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
r['stream'] = dict(weights.last_stream)
r['leaked'] = backend.live_buffers() - len(backend._read_pool) - before
r
"""


def test_a_corrupted_block_of_the_weights_is_named_by_its_bytes(app):
    # one byte flipped in block 3 (of 11, 4 MiB each) of the weights: MiniLM.load checks each
    # block's sha256 (the manifest's "blocks", digested by WebCrypto) and names that block's
    # bytes; nothing stays on the GPU. Before: one whole-file sha256, in JS, named no place.
    blocks = json.loads((MODEL / "manifest.json").read_text())["files"][WEIGHTS.name]["blocks"]
    size = blocks["bytes"]
    data = bytearray(WEIGHTS.read_bytes())
    data[3 * size + 4321] ^= 0x01
    pattern = re.compile(re.escape("/" + WEIGHTS.name) + r"(\?.*)?$")
    app.page.route(pattern, lambda route: serve_bytes(route, bytes(data),
                                                      "application/octet-stream"))
    try:
        r = app.py(LOAD_MODEL)
    finally:
        app.page.unroute(pattern)
    assert not r["ok"], r
    assert r["error"].startswith(
        f"IntegrityError: /models/all-MiniLM-L6-v2/{WEIGHTS.name}: bytes {3 * size}-"
        f"{4 * size - 1} of {len(data)} (block 3 of {len(blocks['sha256'])}) have sha256 "
        f"{hashlib.sha256(data[3 * size:4 * size]).hexdigest()}, the manifest lists "
        f"{blocks['sha256'][3]}"), r["error"]
    assert r["error"].endswith("no tensor was kept")
    assert r["stream"]["blockHash"] == "WebCrypto" and r["stream"]["bytes"] == len(data)
    assert r["leaked"] == 0
    r = app.py(LOAD_MODEL)  # the file as it is: loads
    assert r["ok"] and r["leaked"] == 0, r


def test_a_network_that_stays_down_is_named_and_leaves_nothing(app):
    # every attempt past byte 2 MB is reset: a few retries, then a DownloadError naming the
    # file and how far it got; every buffer made for the file is destroyed
    r = load_weights(app, f"/faulty/drop-always-2000000/models/all-MiniLM-L6-v2/{WEIGHTS.name}")
    assert not r["ok"]
    assert r["error"].startswith("DownloadError: ") and WEIGHTS.name in r["error"], r
    assert "stopped at" in r["error"] and "of 45.2 MB" in r["error"]
    assert "retries" in r["error"] and "no tensor was kept" in r["error"]
    assert r["leaked"] == 0
    assert r["seconds"] < 30


def test_the_server_dying_mid_weights_is_named_on_the_page(browser, test_data):
    # the demo page loads the model from a server that exits after 5 MB of the weights: the
    # page shows an error naming the file, the GPU keeps nothing, and the page stays alive
    srv = start_server({"/test-data/": test_data}, script=FAULT_SERVER)
    page = new_page(browser, srv, Guard(srv.origin))
    try:
        page.goto(srv.url + "?model=none")
        assert wait_final(page) == "ready"
        app = App(page)
        before = app.py("import pybridge\n(await pybridge.default_backend()).live_buffers()")
        t0 = time.perf_counter()
        error = page.evaluate("""() => pybridge.call("pybridge.demo", "load_model", [],
            {url: "/faulty/die-5000000/models/all-MiniLM-L6-v2/", dtype: "float16"})
            .then(() => "loaded", (e) => e.message)""")
        assert time.perf_counter() - t0 < 60
        assert srv.proc.wait(timeout=10) == 0  # the server is gone
        assert error.startswith("DownloadError: ") and WEIGHTS.name in error, error
        assert "stopped at" in error
        assert app.py("(await pybridge.default_backend()).live_buffers()") == before
        assert page.errors == []
    finally:
        page.context.close()
        if srv.proc.poll() is None:
            srv.stop()


def test_a_gpu_lost_in_the_middle_of_a_search(fresh_page, server):
    # the device is destroyed while the demo's search waits on the GPU: the demo loads the
    # model again on a new device and answers; an embed in flight raises DeviceLost, not a
    # raw JS error
    fresh_page.goto(server.url)
    fresh_page.wait_for_function("['error', 'ready'].includes(pybridge.model)", timeout=300_000)
    assert fresh_page.evaluate("pybridge.model") == "ready", fresh_page.evaluate("pybridge.error")
    app = App(fresh_page)
    r = app.py("""
import asyncio, pybridge
from pybridge import demo
from pybridge.errors import DeviceLost
sentences = ['Boil water.', 'Python is a language.', 'The cat sleeps.']
before = await demo.search('computers and programming', sentences)
task = asyncio.ensure_future(demo.search('computers and programming', sentences))
await asyncio.sleep(0)
(await pybridge.default_backend()).device.destroy()
after = await task
task = asyncio.ensure_future(demo._model.embed(sentences))
await asyncio.sleep(0)
(await pybridge.default_backend()).device.destroy()
try:
    await task
    embed = 'answered'
except Exception as e:
    embed = f'{type(e).__name__}: {e}'
{'before': before['ranked'], 'after': after['ranked'], 'recovered': after['recovered'],
 'embed': embed}
""")
    assert r["recovered"] and "device was lost" in r["recovered"], r
    assert [x["text"] for x in r["after"]] == [x["text"] for x in r["before"]]
    np.testing.assert_allclose([x["score"] for x in r["after"]],
                               [x["score"] for x in r["before"]], atol=1e-3)
    assert r["embed"].startswith("DeviceLost: ") and "device was lost" in r["embed"], r["embed"]
    assert fresh_page.errors == []
