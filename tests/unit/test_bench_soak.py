"""The soak benchmark's parts that need no GPU (tools/bench_soak.py): the summary keeps the
metrics a mode samples and judges their slopes; the shapes the searches make; and the Dawn
mode's search loop and samples, run under Node (tools/gpu/runner.mjs, no GPU asked for) with
the real `pybridge.demo.search` over a stand-in model whose embeddings depend only on the text,
each search through the page's own call path (web/call.js); positive controls: a search path
that leaks a PyProxy per search is seen growing by the soak's samples and summary, and the
GPU-buffer counter (tools/gpu/buffers.mjs) counts a buffer dropped without destroy().

The Node tests need Node (tools/dev.py setup) and build/site/ (Pyodide and the wheels).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI, SITE
from tools import bench_soak
from tools.gpu import pack
from tools.gpu.node_app import NodeApp

ROOT = Path(__file__).resolve().parent.parent.parent
VOCAB = SITE / "models" / pack.MODEL_NAME / "vocab.txt"


def need(what: str, ok: bool) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"CI must run this test, but {what} is missing (tools/dev.py setup)")
        pytest.skip(f"{what} is missing (python3 tools/dev.py setup)")


# --- the summary ----------------------------------------------------------------------------
def test_summary_keeps_the_sampled_metrics_and_judges_slopes():
    """A Dawn-like run: no Chromium metric appears; a metric one sample lacks is left out;
    flat, growing and constant series get their verdicts."""
    samples = [{"searches": n, "heapBytes": 64 << 20, "mallocBytes": (20 << 20) + n * 1000,
                "gpuBuffers": 42, "jsRefs": 300 + (n // 500) % 2, "nodeRss": 500 << 20}
               for n in range(0, 10_001, 100)]
    samples[5]["gpuMemory"] = 1 << 30  # sampled once only: not a series
    rows = {r["metric"]: r for r in bench_soak.summarize(samples, bench_soak.warmup(10_000))}
    assert list(rows) == ["heapBytes", "mallocBytes", "gpuBuffers", "jsRefs", "nodeRss"]
    assert rows["heapBytes"]["verdict"] == "flat"
    assert rows["gpuBuffers"]["verdict"] == "flat"  # a count that never moved
    assert rows["jsRefs"]["verdict"] == "flat"  # a count swinging by one, no trend
    assert rows["mallocBytes"]["verdict"] == "GROWS"  # ~1 MB per 1,000 searches
    assert rows["mallocBytes"]["slope_per_1000"] == pytest.approx(1e6)
    table = bench_soak.table(list(rows.values()))
    assert "Node RSS" in table and "renderer" not in table


def series(f, n=10_000, every=100):
    return [{"searches": k, "x": f(k)} for k in range(0, n + 1, every)]


@pytest.mark.parametrize("f, unit, verdict", [
    (lambda k: 114 + k // 1100, "", "GROWS"),  # one buffer leaked every 1,100 searches
    (lambda k: 0 + k // 2500, "", "GROWS"),  # one PyProxy every 2,500
    (lambda k: 141 + (k // 700) % 2, "", "flat"),  # a count swinging by one, no trend
    (lambda k: 141, "", "flat"),
    # 1.5 MiB per 1,000 steady (over 0.5% of 200 MiB), plus a 30 MiB step early
    (lambda k: (200 << 20) + k * 1.5 * (1 << 20) / 1000 + (30 << 20) * (k > 2000), "B", "GROWS"),
    # a cache filling up to 40 MiB by 4,000 searches, then flat
    (lambda k: (300 << 20) + min(k, 4000) * 10 * (1 << 10), "B", "GROWS, levels off"),
    (lambda k: (300 << 20) + (k % 300) * 1000, "B", "flat"),  # noise, no trend
])
def test_verdicts_see_slow_leaks(monkeypatch, f, unit, verdict):
    """Found in review: a count leaking one per 1,100 searches, and 2 MiB of RSS per 1,000
    inside the slope's error, were both called "flat"; a steady leak after a step was
    "GROWS, slowing"."""
    monkeypatch.setattr(bench_soak, "METRICS", [("x", "x", unit)])
    (row,) = bench_soak.summarize(series(f), bench_soak.warmup(10_000))
    assert row["verdict"] == verdict, row


def test_check_catches_wrong_and_recovered_answers():
    sentences = ["a", "b", "c"]
    job = [("q", 0, sentences)]
    good = {"ranked": [["b", 0.9], ["a", 0.5], ["c", 0.1]], "recovered": None}
    first: dict = {}
    assert bench_soak.check([good], first, job) == []
    bad = [{"ranked": [["c", 0.1], ["a", 0.5], ["b", 0.9]]},  # reversed
           {"ranked": [["b", 0.9], ["b", 0.9], ["c", 0.1]]},  # a sentence twice, one missing
           {**good, "recovered": "the GPU device was lost; the model was loaded again"},
           {"ranked": [["b", 0.9], ["a", 0.6], ["c", 0.1]]},  # a score moved
           {"error": "RuntimeError: boom"}]
    for answer in bad:
        assert bench_soak.check([answer], first, job), answer


def test_progress_line_names_only_what_was_sampled():
    line = bench_soak.progress({"searches": 300, "seconds": 12.0, "heapBytes": 64 << 20,
                                "gpuBuffers": 42, "nodeRss": 500 << 20}, 0)
    assert "heap 64.00 MiB" in line and "buffers 42" in line and "node 500.00 MiB" in line
    assert "renderer" not in line and "problems" not in line


# --- the shapes -----------------------------------------------------------------------------
def test_shapes_follow_the_model_padding():
    """The mix makes the five shapes the docstring names, on a CPU device (pad 1: the longest
    text) and on a GPU (pad 16: widths a multiple of 16)."""
    need(str(VOCAB.relative_to(ROOT)), VOCAB.exists())
    cpu = bench_soak.shapes(30, 0, VOCAB, 256, 1)
    gpu = bench_soak.shapes(300, 0, VOCAB, 256, 16)
    assert len(cpu) == len(gpu) == 5
    assert sum(cpu.values()) == 30 and sum(gpu.values()) == 300
    assert cpu != gpu and all(int(k.split(" x ")[1]) % 16 == 0 for k in gpu)


# --- the Dawn mode's loop, under Node ---------------------------------------------------------
# A stand-in for pybridge.demo's model: unit vectors drawn from a seed made of the text, so a
# query and set always get the same scores; one query raises, as a failed search would.
FAKE_MODEL = """\
import numpy as np
import pybridge.demo as demo


class _Backend:
    def live_buffers(self):
        return 7


class _FakeModel:
    backend, _shapes, last_tokens = _Backend(), {}, 0
    max_length, pad_tokens_to = 256, 16

    async def embed(self, texts, batch_size=32, timings=None):
        if texts[0] == "GPU":
            raise ValueError("no GPU here")
        rows = [np.random.default_rng(sum(map(ord, t))).standard_normal(384) for t in texts]
        v = np.array(rows, dtype=np.float32)  # (len(texts), 384)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


demo._model = _FakeModel()
"""


@pytest.fixture(scope="module")
def node_app(tmp_path_factory):
    """runner.mjs without a GPU, the stand-in model loaded and the soak's sampling set up."""
    node = shutil.which("node")
    need("node", node is not None)
    pyodide = pack.pyodide_dir()
    need("build/site/ (Pyodide)", (pyodide / "pyodide-lock.json").exists())
    tmp = tmp_path_factory.mktemp("soak")
    with NodeApp(Path(node), tmp / "unused", pyodide, ROOT / "web", {}, gpu=False,
                 log=tmp / "node.log", node_flags=("--expose-gc",)) as app:
        app.py(FAKE_MODEL)
        app.py(bench_soak.PY_SETUP)
        yield app


def test_dawn_search_loop_answers_checks_and_leaks_nothing(node_app):
    """Searches through the real demo.search, each a call from JS as the page's worker makes
    it: check() accepts every answer but the failing query's, whose error reads as the page
    shows it; the answers have the Chromium mode's shape; the run stops at `seconds`; the
    samples hold the worker-side and Node metrics (not Chromium's), and 120 more searches
    leave JS refs and PyProxies where they were."""
    target = bench_soak.NodeTarget(node_app)
    first: dict = {}
    jobs = [bench_soak.job(i) for i in range(120)]  # the whole mix, four times

    assert len(target.searches(jobs, 0.0)) == 1  # past `seconds` after the first search
    answers = target.searches(jobs, 60.0)
    problems = bench_soak.check(answers, first, jobs)
    failing = [j for j in jobs if j[0] == "GPU"]
    assert len(answers) == 120 and all(a["ms"] >= 0 for a in answers)
    assert len(problems) == len(failing) > 0
    assert all("ValueError: no GPU here" in p for p in problems)
    texts = [t for t, _ in answers[0]["ranked"]]
    assert sorted(texts) == sorted(jobs[0][2])
    assert set(answers[0]) == {"ms", "ranked", "tokens", "timings", "recovered"}
    assert answers[0]["recovered"] is None and answers[0]["tokens"] == 0
    assert set(next(a for a in answers if "error" in a)) == {"ms", "error"}
    assert all(isinstance(s, float) for _, s in answers[0]["ranked"])

    before = bench_soak.sample(target, 121, 1.0)
    assert bench_soak.check(target.searches(jobs, 60.0), first, jobs) == problems
    after = bench_soak.sample(target, 241, 2.0)
    assert before["gpuBuffers"] == 7 and before["heapBytes"] > 0
    assert before["nodeRss"] > before["nodeRssAnon"] > before["nodeJsBytes"] > 0
    assert before["nodeExternalBytes"] > 0
    assert not {"rendererRss", "gpuProcessRss", "workerJsBytes", "pageJsBytes"} & set(after)
    assert after["jsRefs"] == before["jsRefs"]
    assert after["pyProxies"] == before["pyProxies"]
    assert "gpuBuffersDawn" not in after  # no GPU, no counter (tools/gpu/buffers.mjs)


def test_dawn_searches_share_the_workers_call_code():
    """One copy of the page's call path: worker.js and runner.mjs import web/call.js, and
    neither makes its own; the pack carries call.js and every module it and bridge.js import."""
    worker = (ROOT / "web" / "worker.js").read_text()
    runner = (ROOT / "tools" / "gpu" / "runner.mjs").read_text()
    assert 'import { callPython, toPlain } from "./call.js";' in worker
    assert '"call.js"' in runner and "callPython(pyodide, call)" in runner
    for js in (worker, runner):
        assert "function callPython" not in js and "toPy(" not in js and "toJs(" not in js
    need("build/site/ (Pyodide, the model)", (SITE / "models" / pack.MODEL_NAME /
                                              "manifest.json").exists())
    members = pack.site_members()
    todo, seen = ["bridge.js", "call.js"], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        assert f"web/{name}" in members, f"the pack lacks web/{name}"
        todo += [m for m in re.findall(r'from "\./([^"]+)"', (ROOT / "web" / name).read_text())
                 if m not in seen]
    assert seen >= {"bridge.js", "call.js", "sha256.js"}


# Leaks a PyProxy per search in three places of the page's path (none of them what the page
# does): the call's globals never destroyed (callPython without `globals.destroy()`), the
# answer never destroyed (toPlain without `proxy.destroy()`), and a search that hands JS a
# proxy it keeps. Each is switched on in the runner and off again by `off`.
LEAKS = {
    "globals not destroyed": ("""() => {
      const p = self.pyodide, real = p.toPy;
      p.toPy = function (...a) { const g = real.apply(this, a); g.copy(); return g; };
      self.leakOff = () => { p.toPy = real; };
    }""", None),
    "answer not destroyed": ("""() => {
      const p = self.pyodide, real = p.runPythonAsync;
      p.runPythonAsync = async function (code, options) {
        const r = await real.call(this, code, options);
        if (options && options.globals && r && r.copy) r.copy();  // callPython's, not a sample's
        return r;
      };
      self.leakOff = () => { p.runPythonAsync = real; };
    }""", None),
    "search keeps a proxy": (None, """\
import js
import pybridge.demo as demo
from pyodide.ffi import create_proxy

_real_search, _kept = demo.search, js.Array.new()


async def _leaky_search(query, sentences):
    answer = await _real_search(query, sentences)
    _kept.push(create_proxy(answer))
    return answer


demo.search = _leaky_search
"""),
}
LEAK_OFF = {"js": "() => self.leakOff()",
            "py": "import pybridge.demo as demo\ndemo.search = _real_search"}


def soak(target, start: int, n: int, every: int) -> tuple[list[dict], int]:
    """main()'s loop in small: n searches from job `start`, a sample before and every `every`;
    the samples and how many answers were errors."""
    samples, errors = [bench_soak.sample(target, 0, 0.0)], 0
    for done in range(0, n, every):
        jobs = [bench_soak.job(start + i) for i in range(done, done + every)]
        answers = target.searches(jobs, 60.0)
        assert len(answers) == every
        errors += sum("error" in a for a in answers)
        samples.append(bench_soak.sample(target, done + every, 0.0))
    return samples, errors


@pytest.mark.parametrize("leak", list(LEAKS))
def test_dawn_soak_sees_a_pyproxy_leaked_per_search(node_app, leak):
    """Positive control: with a PyProxy leaked per search (the failing query's searches leak
    none there: no answer), the soak's samples count one more live PyProxy per answer and its
    summary says GROWS; the same searches without the leak leave the count flat."""
    target = bench_soak.NodeTarget(node_app)
    n, every = 120, 20
    clean, _ = soak(target, 0, n, every)
    rows = {r["metric"]: r for r in bench_soak.summarize(clean, bench_soak.warmup(n))}
    assert rows["pyProxies"]["verdict"] == "flat"
    assert clean[-1]["pyProxies"] == clean[0]["pyProxies"]

    js, py = LEAKS[leak]
    node_app.js(js) if js else node_app.py(py)
    try:
        leaky, errors = soak(target, 0, n, every)
    finally:
        node_app.js(LEAK_OFF["js"]) if js else node_app.py(LEAK_OFF["py"])
    grew = leaky[-1]["pyProxies"] - leaky[0]["pyProxies"]
    assert grew == (n if leak == "globals not destroyed" else n - errors) and errors > 0
    rows = {r["metric"]: r for r in bench_soak.summarize(leaky, bench_soak.warmup(n))}
    assert rows["pyProxies"]["verdict"].startswith("GROWS")
    assert rows["pyProxies"]["slope_per_1000"] == pytest.approx(1000 * grew / n, rel=0.2)

    after, _ = soak(target, n, 20, 20)  # switched off: the leaked proxies stay, no more come
    assert after[-1]["pyProxies"] == after[0]["pyProxies"] == leaky[-1]["pyProxies"]


# Fake WebGPU classes for tools/gpu/buffers.mjs: what dawn.node's globals offer.
BUFFERS_JS = """
import { countBuffers } from "%s";
class GPUBuffer { destroy() { this.gone = (this.gone || 0) + 1; } }
class GPUDevice { createBuffer(d) { return Object.assign(new GPUBuffer(), d); } }
const counts = countBuffers({ GPUDevice, GPUBuffer });
const device = new GPUDevice();
const kept = [device.createBuffer({size: 4}), device.createBuffer({size: 8})];
kept[0].destroy(); kept[0].destroy();  // twice: counted once, passed on both times
(() => { device.createBuffer({size: 16}); })();  // dropped without destroy()
const before = {...counts};
for (let i = 0; i < 5 && counts.collected === 0; i++) {
  gc();
  await new Promise((r) => setTimeout(r, 20));  // finalizers run after the GC, as a task
}
console.log(JSON.stringify({before, after: counts, gone: kept[0].gone, size: kept[1].size}));
"""


def test_buffer_counter_counts_buffers_dropped_without_destroy(tmp_path):
    """Positive control for "GPU buffers (Dawn)": created - destroyed counts a buffer dropped
    without destroy(), also after the JS GC freed it; a second destroy() counts once; the
    wrapped methods still do what they did."""
    node = shutil.which("node")
    need("node", node is not None)
    script = tmp_path / "count.mjs"
    script.write_text(BUFFERS_JS % (ROOT / "tools" / "gpu" / "buffers.mjs").as_uri())
    out = subprocess.run([node, "--expose-gc", str(script)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    got = json.loads(out)
    assert got["before"] == {"created": 3, "destroyed": 1, "collected": 0}
    assert got["after"] == {"created": 3, "destroyed": 1, "collected": 1}
    assert got["gone"] == 2 and got["size"] == 8
