"""`tools/dev.py export DIR` (tools/export.py): the site written to a folder, served by a
plain static server (Python's http.server: no cross-origin isolation, no Range, no gzip, no
/selftest page alias), boots, loads the model and searches, ranking the demo's sentences as
sentence-transformers does here; and the folder holds the dev server's files byte for byte."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from tests.reference import st_embeddings
from tools.export import SERVING, export
from tools.harness import BOOT_TIMEOUT_MS, ROOT, new_context, wait_final
from tools.server import SECURITY_HEADERS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    dest = tmp_path_factory.mktemp("export") / "site"
    export(dest)
    return dest


@pytest.fixture(scope="module")
def static_server(exported):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(exported)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_the_export_holds_the_dev_servers_files(exported, server):
    """Every file of the folders the dev server serves is in the export, byte for byte (read
    over HTTP from the dev server for a few, compared on disk for all)."""
    roots = [(ROOT / "build" / "site", ""), (ROOT / "web", ""), (ROOT / "wgsl", "wgsl/")]
    count = 0
    for folder, prefix in roots:  # (web/ and build/site/ share no file name)
        for path in folder.rglob("*"):
            rel = path.relative_to(folder)
            if path.is_file() and not any(p.startswith(".") for p in rel.parts):
                got = exported / prefix / rel
                assert got.is_file(), f"missing from the export: {prefix}{rel}"
                assert got.read_bytes() == path.read_bytes(), got
                count += 1
    assert count == sum(1 for p in exported.rglob("*") if p.is_file()) - 3  # + the 3 configs
    assert count > 30
    for url in ("index.html", "config.json", "worker.js", "wgsl/matmul.wgsl"):
        with urllib.request.urlopen(server.url + url) as r:
            assert hashlib.sha256(r.read()).digest() == hashlib.sha256(
                (exported / url).read_bytes()).digest(), url
    # the headers the dev server sends, for the usual hosts
    for config in (exported / "_headers", exported / SERVING / "nginx.conf",
                   exported / SERVING / "Caddyfile"):
        text = config.read_text()
        for name, value in SECURITY_HEADERS.items():
            assert name in text and value in text, (config.name, name)


def test_force_never_empties_the_checkout_or_a_folder_that_is_not_an_export(tmp_path):
    """Found in review: `export . --force` from the checkout emptied the checkout (the guard
    refused only folders inside the served ones). A fake checkout here: nothing is deleted."""
    checkout = tmp_path / "checkout"
    for folder in ("web", "wgsl", "build/site"):
        (checkout / folder).mkdir(parents=True)
        (checkout / folder / "kept.txt").write_text("mine")
    (checkout / ".git").mkdir()
    for dest in (checkout, tmp_path, checkout / "build"):
        with pytest.raises(SystemExit, match="which the site is read from"):
            export(dest, force=True, root=checkout)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_text("mine")
    with pytest.raises(SystemExit, match="not an earlier export"):
        export(other, force=True, root=checkout)
    assert (other / "a.jpg").read_text() == "mine"
    assert all((checkout / f / "kept.txt").read_text() == "mine"
               for f in ("web", "wgsl", "build/site")) and (checkout / ".git").is_dir()
    earlier = tmp_path / "earlier"
    export(earlier, root=checkout)
    (earlier / "stale.txt").write_text("old")
    export(earlier, force=True, root=checkout)  # an earlier export is emptied and written again
    assert not (earlier / "stale.txt").exists() and (earlier / "kept.txt").read_text() == "mine"


def test_an_export_is_not_written_over_a_folder_in_use(tmp_path):
    (tmp_path / "kept.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty"):
        export(tmp_path)
    assert (tmp_path / "kept.txt").read_text() == "mine"
    with pytest.raises(SystemExit, match="which the site is read from"):
        export(ROOT / "web" / "exported")
    assert not (ROOT / "web" / "exported").exists()


def test_a_plain_static_server_boots_the_export_and_it_searches(browser, static_server, tmp_path):
    context = new_context(browser)
    requests, errors = [], []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(static_server)  # the default page: the float16 model, the demo's search
        assert wait_final(page) == "ready", page.evaluate("pybridge.error")
        assert page.evaluate("pybridge.device") == "gpu", page.evaluate("pybridge.noWebGPU")
        assert page.evaluate("crossOriginIsolated") is False  # a plain server: still works
        page.wait_for_function(
            "pybridge.lastSearch || pybridge.model === 'error' || pybridge.error",
            timeout=BOOT_TIMEOUT_MS)
        assert page.evaluate("pybridge.model") == "ready", page.evaluate("pybridge.error")
        query = page.input_value("#query")
        ranked = page.evaluate("pybridge.lastSearch.ranked")
        sentences = [r["text"] for r in ranked]
        assert len(sentences) >= 5
        ref = st_embeddings(tmp_path, [query, *sentences])
        want = ref[1:] @ ref[0]
        got = np.array([r["score"] for r in ranked])
        np.testing.assert_allclose(got, want, atol=2e-2)  # float16 weights
        assert [s for _, s in sorted(zip(-want, sentences))][0] == sentences[0]
        assert all(u.startswith(static_server) for u in requests), \
            [u for u in requests if not u.startswith(static_server)]
        assert errors == []
    finally:
        context.close()
