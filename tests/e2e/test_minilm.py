"""all-MiniLM-L6-v2 in the browser (Pyodide + WebGPU on SwiftShader): the tokenizer against
HF tokenizers and the embeddings against sentence-transformers, both run natively."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.cases.corpus import MODEL_SENTENCES, TOKENIZER_CORPUS
from tests.reference import cosine, need, st_embeddings
from tests.unit.test_native_minilm import MIN_COSINE
from tests.unit.test_tokenizer import hf, model_files  # noqa: F401  (fixtures)

URL = "/models/all-MiniLM-L6-v2/"


def test_tokenizer_in_the_browser_equals_hf_tokenizers(app, hf):  # noqa: F811
    hf.enable_truncation(256)
    got = app.py(
        "from pybridge.minilm import _read_text\nfrom pybridge.tokenizer import WordPiece\n"
        f"tok = WordPiece.from_vocab_text(await _read_text({URL!r}, 'vocab.txt'))\n"
        f"[tok.encode(t, 256) for t in {TOKENIZER_CORPUS!r}]"
    )
    for text, ids in zip(TOKENIZER_CORPUS, got):
        assert ids == hf.encode(text).ids, repr(text)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_embeddings_match_sentence_transformers(app, tmp_path_factory, dtype):
    reference = st_embeddings(tmp_path_factory.mktemp("st"), MODEL_SENTENCES)
    r = app.py(
        "import base64, numpy as np\nfrom pybridge.minilm import MiniLM\n"
        "seen = []\n"
        f"m = await MiniLM.load({URL!r}, dtype={dtype!r}, progress=lambda d, t: seen.append(d))\n"
        f"e = await m.embed({MODEL_SENTENCES!r}, batch_size=4)\n"
        f"single = np.concatenate([await m.embed([s]) for s in {MODEL_SENTENCES[:2]!r}])\n"
        "m.free()\n"
        "{'e': base64.b64encode(e.tobytes()).decode(), 'single': base64.b64encode(single.tobytes()).decode(),"
        " 'progress': seen[-1]}"
    )
    got = np.frombuffer(base64.b64decode(r["e"]), np.float32).reshape(len(MODEL_SENTENCES), 384)
    single = np.frombuffer(base64.b64decode(r["single"]), np.float32).reshape(2, 384)
    cos = cosine(got, reference)
    assert cos.min() >= MIN_COSINE[dtype], dict(zip(MODEL_SENTENCES, cos.round(6)))
    np.testing.assert_allclose(single, got[:2], atol=1e-5)  # batched == one at a time
    manifest = json.loads((reference_dir() / "manifest.json").read_text())
    name = {"float32": "model-f32.safetensors", "float16": "model-f16.safetensors"}[dtype]
    assert r["progress"] == manifest["files"][name]["bytes"]  # progress reached the whole file


def reference_dir():
    from tests.reference import MODEL_DIR

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    return MODEL_DIR


def test_the_demo_page_loads_the_model_and_ranks_sentences(fresh_page, server):
    # every message the page sends its worker, to check what travels as Python source
    fresh_page.add_init_script("""{
        const send = Worker.prototype.postMessage;
        window.toWorker = [];
        Worker.prototype.postMessage = function (m, ...rest) {
            window.toWorker.push(JSON.parse(JSON.stringify(m)));
            return send.call(this, m, ...rest);
        };
    }""")
    fresh_page.goto(server.url)  # the default page: float16 model, semantic search
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.model === 'error' || pybridge.error",
                                 timeout=300_000)
    assert fresh_page.evaluate("pybridge.model") == "ready", fresh_page.evaluate("pybridge.error")
    # the load's stages: weights and pipelines side by side, then the warm-up alone
    info = fresh_page.evaluate("pybridge.modelInfo")
    assert 0 < info["loadMs"] <= info["readyMs"] and 0 < info["compileMs"] <= info["readyMs"]
    assert info["warmupMs"] > 0 and fresh_page.evaluate("pybridge.timings.modelReady") > 0
    assert "kernels compiled in" in fresh_page.locator("#model-panel small").inner_text()
    ranked = fresh_page.evaluate("pybridge.lastSearch.ranked")
    assert ranked[0]["text"].startswith("Boil water")  # "How do I cook pasta?"
    assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))
    assert fresh_page.locator("#ranked li").count() == len(ranked)
    # a new query typed by a person
    fresh_page.evaluate("pybridge.lastSearch = null")
    fresh_page.fill("#query", "computers and programming")
    fresh_page.click("#search-button")
    fresh_page.wait_for_function("pybridge.lastSearch", timeout=120_000)
    top = fresh_page.evaluate("pybridge.lastSearch.ranked[0].text")
    assert top.startswith(("Python", "The GPU")), top
    assert "GPU" in fresh_page.locator("#search-timings").inner_text()
    # a query that would be code if it were pasted into Python source is data here
    hostile = 'x""")\\n__import__("os")  # \'{}\' \\u0041'
    fresh_page.evaluate("pybridge.lastSearch = null")
    fresh_page.fill("#query", hostile)
    fresh_page.click("#search-button")
    fresh_page.wait_for_function("pybridge.lastSearch", timeout=120_000)
    assert len(fresh_page.evaluate("pybridge.lastSearch.ranked")) == len(ranked)
    sent = fresh_page.evaluate("window.toWorker")
    calls = [m for m in sent if m.get("type") == "call" and m["name"] == "search"]
    assert [c["args"][0] for c in calls[-2:]] == ["computers and programming", hostile]
    assert not any("computers and programming" in m.get("code", "") for m in sent)
    # the GPU lost (as a driver reset would): the next search loads the model again and answers
    fresh_page.evaluate("""pybridge.run(`import pybridge
b = await pybridge.default_backend()
b.device.destroy()
(await b.device.lost).reason`)""")
    fresh_page.evaluate("pybridge.lastSearch = null")
    fresh_page.fill("#query", "computers and programming")
    fresh_page.click("#search-button")
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=300_000)
    assert fresh_page.evaluate("pybridge.error") is None
    after = fresh_page.evaluate("pybridge.lastSearch")
    assert after["ranked"][0]["text"] == top and "device was lost" in after["recovered"]
    assert "Recovered" in fresh_page.locator("#search-timings").inner_text()
    # lost again, and two searches at once: one reload serves both (found in review: the
    # second said "the model is not loaded yet" while the first reloaded)
    both = fresh_page.evaluate("""async () => {
        await pybridge.run(`import pybridge
b = await pybridge.default_backend()
b.device.destroy()
(await b.device.lost).reason`);
        const q = ["computers and programming", "How do I cook pasta?"];
        const rs = await Promise.all(q.map((x) => pybridge.search(x, ["Boil water.", "Python is a language."])));
        return rs.map((r) => [r.ranked.length, r.recovered]);
    }""")
    assert [n for n, _ in both] == [2, 2] and all("device was lost" in r for _, r in both), both
    assert fresh_page.errors == []


def test_embed_refuses_what_javascript_can_send_naming_the_item(app):
    """What only the browser makes: values from JavaScript through `pybridge.call` (null,
    numbers, arrays, objects and typed arrays arrive as None, int, list, dict and memoryview),
    JavaScript strings with a lone surrogate (Pyodide passes them on as they are), and a JS
    array handed to embed as a JsProxy. Each bad item gets an error naming `embed`, its index
    and its type (found here: errors named `encode_batch`), a lone surrogate one saying how
    to replace it (s.toWellFormed(), whose U+FFFD the normalizer drops), and good input works."""
    app.py(
        "import sys, types, numpy as np\nfrom pybridge.minilm import MiniLM\n"
        f"m = await MiniLM.load({URL!r}, dtype='float16')\n"
        "hostile = types.ModuleType('hostile')\n"
        "async def embed(texts):\n"
        "    return (await m.embed(texts)).round(5).tolist()\n"
        "hostile.embed = embed\n"
        "sys.modules['hostile'] = hostile\n"
        "'ready'"
    )
    r = app.page.evaluate("""async () => {
        const outcome = async (texts) => {
            try { return await pybridge.call("hostile", "embed", [texts]); }
            catch (e) { return String(e.message); }
        };
        const bad = [null, undefined, 3, 2.5, true, ["nested"], {a: 1}, new Uint8Array([104])];
        const errors = [];
        for (const item of bad) errors.push(await outcome(["ok", item]));
        return {
            errors,
            surrogate: await outcome(["ok", "fine", "caf\\udce9"]),
            reversed: await outcome(["\\udc00\\ud800"]),
            wellFormed: await outcome(["ok", "caf\\udce9".toWellFormed(), "\\ud83d\\ude00"]),
            plain: await outcome(["ok", "caf", "😀"]),
            empty: await outcome([]),
        };
    }""")
    kinds = ["NoneType", "NoneType", "int", "float", "bool", "list", "dict", "memoryview"]
    for error, kind in zip(r["errors"], kinds):
        assert error.startswith(f"TypeError: embed takes a list of str, item 1 is {kind}"), error
    assert r["surrogate"].startswith("ValueError: embed: item 2 contains a lone surrogate "
                                     "(U+DCE9 at character 3)"), r["surrogate"]
    assert "toWellFormed()" in r["surrogate"]
    assert r["reversed"].startswith("ValueError: embed: item 0 contains a lone surrogate "
                                    "(U+DC00 at character 0)"), r["reversed"]
    assert r["wellFormed"] == r["plain"] and len(r["plain"]) == 3  # U+FFFD dropped, pair joined
    assert r["empty"] == []
    same = app.py("import js\n"
                  "a = await m.embed(js.Array.of('ok', 'caf'))\n"
                  "b = await m.embed(['ok', 'caf'])\n"
                  "m.free()\n"
                  "bool((a == b).all())")
    assert same is True


# --- pipelines compiled at load, beside the weights stream (tests/cases/compile_ahead.py) ------
@pytest.fixture(scope="module")
def ahead(app):
    from tests.conftest import ROOT

    app.load_module("compile_cases", ROOT / "tests" / "cases" / "compile_ahead.py")
    return app


def test_pipelines_are_compiled_at_load_identically_to_compiled_lazily(ahead):
    """createComputePipelineAsync, all at once while the weights stream: every pipeline of
    every forward pass exists when load returns, the embeds compile none, and their
    embeddings are bit for bit those of pipelines each plan compiled synchronously."""
    from tests.unit.test_compile_ahead import check_compiled_at_load

    reference_dir()
    r = ahead.py("from pybridge.browser import BrowserBackend\nfrom pybridge.minilm import MiniLM\n"
                 "await compile_cases.compiled_at_load(lambda b: MiniLM.load("
                 f"{URL!r}, dtype='float16', backend=b), BrowserBackend.create)")
    check_compiled_at_load(r)


def test_async_compile_errors_name_the_kernel(ahead):
    """A rejected createComputePipelineAsync (GPUPipelineError) and a shader module that
    fails are Python errors naming the kernel, as a plan's sync compile gives them; nothing
    stays on the device or in the error scopes, and no proxy is left."""
    from tests.unit.test_compile_ahead import check_compile_errors

    r = ahead.py("import pybridge, pybridge_js\nb = await pybridge.default_backend()\n"
                 "await compile_cases.compile_errors(b, pybridge_js.liveProxies)")
    check_compile_errors(r)
    assert "broken_kernel" in r["wgsl"]["message"]  # Tint's error names the module's label


def test_a_failed_compile_at_load_frees_the_weights_in_the_browser(ahead):
    from tests.unit.test_compile_ahead import check_failed_load

    reference_dir()
    r = ahead.py("import pybridge\nfrom pybridge.minilm import MiniLM\n"
                 "b = await pybridge.default_backend()\n"
                 "await compile_cases.failed_load_frees_everything(lambda b: MiniLM.load("
                 f"{URL!r}, dtype='float16', backend=b), b)")
    check_failed_load(r)
