"""The soak benchmark's parts that need no GPU (tools/bench_soak.py): the summary keeps the
metrics a mode samples and judges their slopes; the shapes the searches make; and the Dawn
mode's search loop and samples, run under Node (tools/gpu/runner.mjs, no GPU asked for) with
the real `pybridge.demo.search` over a stand-in model whose embeddings depend only on the text.

The Node test needs Node (tools/dev.py setup) and build/site/ (Pyodide and the wheels).
"""

from __future__ import annotations

import shutil
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


def test_dawn_search_loop_answers_checks_and_leaks_nothing(tmp_path):
    """PY_SEARCHES through the real demo.search, each answer converted to a JS object and read
    back: check() accepts every answer but the failing query's; the run stops at `seconds`;
    the samples hold the worker-side and Node metrics (not Chromium's), and 120 more searches
    leave JS refs and PyProxies where they were."""
    node = shutil.which("node")
    need("node", node is not None)
    pyodide = pack.pyodide_dir()
    need("build/site/ (Pyodide)", (pyodide / "pyodide-lock.json").exists())
    with NodeApp(Path(node), tmp_path / "unused", pyodide, ROOT / "web", {}, gpu=False,
                 log=tmp_path / "node.log", node_flags=("--expose-gc",)) as app:
        target = bench_soak.NodeTarget(app)
        app.py(FAKE_MODEL)
        target.py(bench_soak.PY_SETUP)
        target.py(bench_soak.PY_SEARCHES)
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
