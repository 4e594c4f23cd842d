"""The dev server through aiohttp's test client: headers, MIME types, caching, Range,
precompressed files, and paths that try to leave the served folders."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from tools.server import IMMUTABLE, REVALIDATE, Mount, init


@pytest.fixture
def roots(tmp_path: Path):
    web = tmp_path / "web"
    site = tmp_path / "site"
    kernels = tmp_path / "wgsl"
    pyo = site / "pyodide" / "0.27.7"
    for d in (web, pyo, kernels, tmp_path / "secret"):
        d.mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>t</title>")
    (web / "main.js").write_text("export {};")
    (web / ".hidden").write_text("no")
    (site / "config.json").write_text("{}")
    (kernels / "axpy.wgsl").write_text("// kernel")
    (pyo / "pyodide.mjs").write_text("export {};")
    (pyo / "pyodide.asm.wasm").write_bytes(b"\0asm" + bytes(range(256)) * 40)
    (pyo / "pyodide.asm.wasm.gz").write_bytes(gzip.compress((pyo / "pyodide.asm.wasm").read_bytes()))
    (pyo / "pyodide-lock.json").write_text("{}")
    (pyo / "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl").write_bytes(b"PK" + b"x" * 100)
    (pyo / "model.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "secret" / "key.txt").write_text("top secret")
    os.symlink(tmp_path / "secret", web / "escape")  # a link pointing out of the root
    os.symlink(tmp_path / "secret" / "key.txt", web / "key-link.txt")
    return [Mount("/wgsl/", kernels), Mount("/", web), Mount("/", site)]


@pytest.fixture
async def client(aiohttp_client, roots):
    return await aiohttp_client(init(roots))


ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


@pytest.mark.parametrize(
    "path, mime",
    [
        ("/", "text/html"),
        ("/main.js", "text/javascript"),
        ("/config.json", "application/json"),
        ("/wgsl/axpy.wgsl", "text/wgsl"),
        ("/pyodide/0.27.7/pyodide.mjs", "text/javascript"),
        ("/pyodide/0.27.7/pyodide.asm.wasm", "application/wasm"),
        ("/pyodide/0.27.7/numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl", "application/zip"),
        ("/pyodide/0.27.7/model.safetensors", "application/octet-stream"),
    ],
)
async def test_mime_types_and_isolation_headers(client, path, mime):
    r = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert r.status == 200
    assert r.headers["Content-Type"].split(";")[0] == mime
    for k, v in ISOLATION.items():
        assert r.headers[k] == v
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in r.headers


async def test_errors_carry_isolation_headers_too(client):
    r = await client.get("/nope.js")
    assert r.status == 404
    for k, v in ISOLATION.items():
        assert r.headers[k] == v


async def test_cache_control(client):
    versioned = await client.get("/pyodide/0.27.7/pyodide.mjs")
    lock = await client.get("/pyodide/0.27.7/pyodide-lock.json")
    page = await client.get("/main.js")
    assert versioned.headers["Cache-Control"] == IMMUTABLE
    assert lock.headers["Cache-Control"] == REVALIDATE
    assert page.headers["Cache-Control"] == REVALIDATE


async def test_etag_revalidation_gives_304(client):
    first = await client.get("/main.js")
    again = await client.get("/main.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304


async def test_precompressed_gzip_when_accepted(client, roots):
    raw = (roots[2].directory / "pyodide" / "0.27.7" / "pyodide.asm.wasm").read_bytes()
    r = await client.get("/pyodide/0.27.7/pyodide.asm.wasm", headers={"Accept-Encoding": "gzip"},
                         auto_decompress=False)
    body = await r.read()
    assert r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"]
    assert r.headers["Content-Type"] == "application/wasm"
    assert gzip.decompress(body) == raw and len(body) < len(raw)
    plain = await client.get("/pyodide/0.27.7/pyodide.asm.wasm",
                             headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and await plain.read() == raw


async def test_range_requests(client, roots):
    raw = (roots[2].directory / "pyodide" / "0.27.7" / "pyodide.asm.wasm").read_bytes()
    r = await client.get("/pyodide/0.27.7/pyodide.asm.wasm",
                         headers={"Range": "bytes=4-19", "Accept-Encoding": "identity"})
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes 4-19/{len(raw)}"
    assert await r.read() == raw[4:20]
    bad = await client.get("/pyodide/0.27.7/pyodide.asm.wasm",
                           headers={"Range": f"bytes={len(raw) + 10}-", "Accept-Encoding": "identity"})
    assert bad.status == 416


@pytest.mark.parametrize(
    "path",
    [
        "/..%2Fsecret%2Fkey.txt",
        "/%2e%2e/secret/key.txt",
        "/wgsl/%2e%2e%2fweb%2fmain.js",
        "/escape/key.txt",  # symlinked folder pointing outside
        "/key-link.txt",  # symlinked file pointing outside
        "/.hidden",
        "/%2ehidden",
        "/main.js%00.html",
        "/..%5csecret%5ckey.txt",
    ],
)
async def test_paths_cannot_escape_the_roots(client, path):
    r = await client.get(path)
    assert r.status == 404
    assert "top secret" not in await r.text()


async def test_no_directory_listing(client):
    for path in ("/pyodide/", "/pyodide/0.27.7/", "/wgsl/"):
        r = await client.get(path)
        assert r.status == 404, path


async def test_only_get_and_head(client):
    assert (await client.head("/main.js")).status == 200
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = await client.request(method, "/main.js")
        assert r.status == 405, method
