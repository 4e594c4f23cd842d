"""Soak benchmark: many searches in the demo page, and whether memory and handles stay flat.

    python3 tools/dev.py bench soak [--searches 10000] [--every N] [--every-s S] [--minutes M]
                                    [--sentences K] [--dtype D] [--out FILE]
    python3 tools/bench_soak.py --dawn .gpu/pack [--searches 10000] ...   on a real GPU

Two modes run the same searches, checks, samples and summary:

- Chromium (default): boots the demo page as a visitor gets it (all-MiniLM-L6-v2, float16) in
  headless Debian Chromium, WebGPU on SwiftShader, waits for its first search, then searches
  through `window.pybridge.search(query, sentences)`, the call the page's search box makes
  (the worker converts each answer with `toJs` and destroys its PyProxy).
- Dawn (`--dawn PACKDIR`, a pack from `python3 tools/dev.py bench gpu --pack DIR`; `--dawn`
  alone: this checkout's build/site/): the page's own stack (Pyodide, the pybridge wheel,
  web/bridge.js) under Node on Dawn, Chrome's WebGPU engine, on the machine's GPU
  (tools/gpu/runner.mjs). `pybridge.demo.load_model` loads the model as the page does (the
  weights a pack carries: random values in the real layout unless staged, see
  tools/bench_gpu.py), and every search is made from JS as the page's worker makes it, with
  the same code (web/call.js, which web/worker.js imports): `callPython(pyodide, {module:
  "pybridge.demo", name: "search", args: [query, sentences]})` (`toPy` of the arguments,
  `runPythonAsync`, then `destroy` of those globals), the answer converted by `toPlain`
  (`toJs({dict_converter: Object.fromEntries, create_pyproxies: false})`, then `destroy`),
  one call per search; the searches between two samples go to the runner in one request
  (tools/gpu/node_app.py `NodeApp.calls`). Needs Python 3.12 and numpy only (no Playwright).

Queries rotate through a pool of 15 and the sentences through four sets (the page's seven, one
removed, one longer added, reordered), changing every 5 searches; the whole mix repeats every
30 searches. That makes five (batch, tokens) shapes (on SwiftShader padded to the longest text,
on a GPU to a multiple of 16 tokens), so the model's two-shape plan cache builds and frees a
plan in about one search in six, and the tokenizer's cache sees the same bounded vocabulary.
Every answer is checked: all sentences ranked, scores finite, and equal (1e-4) to the first
answer to the same query and set.

Every `--every` searches (default: 100 samples in the run) or `--every-s` seconds (default 60),
whichever comes first, after a full garbage collection in Python (`gc.collect()`) and in the
page's and the worker's JS (`--js-flags=--expose-gc`):

- wasm heap: `pyodide._module.HEAPU8.buffer.byteLength` (it grows, never shrinks);
- malloc in use: dlmalloc's `mallinfo().uordblks` (bytes malloc hands out inside that heap),
  read from Python through ctypes;
- Python objects: `len(gc.get_objects())`, the live objects the cycle collector tracks;
- live GPU buffers: the model's `backend.live_buffers()`, what the leak tests count;
- live PyProxies (Python objects JS holds): `pyodide._module.pyproxy_alloc_map.size`, with
  allocation tracing switched on before the first search by `pybridge_js.liveProxies()`, as
  the leak tests do; the map keeps each live proxy's creation stack, for finding a leak;
- JS refs (JS objects Python holds: JsProxies and Pyodide's temporaries):
  `pyodide._module._hiwire_num_refs()`, the count Pyodide's own tests check for leaks;

Chromium only:
- worker JS heap: `performance.measureUserAgentSpecificMemory()`, its DedicatedWorkerGlobalScope
  share (the page is cross-origin isolated; `ForceEagerMeasureMemory` answers at once);
- page JS heap: CDP `Performance.getMetrics` JSHeapUsedSize of the page;
- renderer RSS: VmRSS of the tab's renderer process (page, worker, wasm heap, V8 heaps);
- GPU process RSS: VmRSS of the GPU process (on SwiftShader the GPU buffers live there).

Dawn only (Node runs with `--expose-gc`; the worker-side counters above are read in the
runner's global scope, where Pyodide lives):
- GPU buffers (Dawn): buffers created and not destroyed, counted at the WebGPU API apart from
  the backend's own count (tools/gpu/buffers.mjs wraps GPUDevice.createBuffer and
  GPUBuffer.destroy; the weights bridge.js creates count too): a buffer that leaves the
  backend's books without destroy() stays in it;
- Node JS heap: `process.memoryUsage().heapUsed` after `gc()`;
- Node external: `process.memoryUsage().external`, memory outside the JS heap that JS objects
  own (ArrayBuffers, such as mapped GPU ranges, and what dawn.node reports to V8);
- Node RSS: `process.memoryUsage().rss`: Pyodide, the wasm heap, Dawn and the Vulkan driver
  (what Chrome splits between the renderer and the GPU process); and its anonymous part
  (RssAnon of /proc/PID/status: allocated memory, not the mapped code of Node, Dawn and the
  driver, which RSS counts as it is paged in);
- GPU memory: `nvidia-smi --query-gpu=memory.used`, the whole device's (where nvidia-smi
  answers; MiB steps), where the GPU buffers live.

A metric a mode lacks is left out of its table and JSON.

Per metric: the value at the first sample after the warm-up (the first 10% of searches, at
least one pass through every query and set), the last value, and the least-squares slope per
1,000 searches over the samples after the warm-up with its standard error. A count that must
not move (GPU buffers, PyProxies, JS refs, Python objects) is "flat" only when it never moved
or its slope is zero within two standard errors, and "GROWS" otherwise: one buffer leaked in
1,100 searches is "GROWS". Bytes are "flat" when the slope plus two standard
errors stays under 0.5% of the start value per 1,000 searches (5% over 10,000); "GROWS" when
the slope less two standard errors is above that ("GROWS, levels off" when the last half's
slope is under half the first half's and itself under that limit: a cache or pool that
filled, flat by the end); otherwise "unclear". The exit status is 1 when an answer was wrong
or a count GROWS.

On SwiftShader a search takes seconds, so `--minutes` stops early and reports the count
reached. Prints a header naming the mode, a line per sample and a compact table; writes
bench-results/soak.json (Dawn: soak-dawn.json, Node's log beside it).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.harness import (  # noqa: E402 (Playwright itself is imported by chromium() only)
    CHROMIUM,
    CHROMIUM_FLAGS,
    WEBGPU_FLAGS,
    App,
    new_context,
    start_server,
    wait_final,
    write_result,
)

# Measuring flags: gc() in every isolate (the page's and the worker's), and
# measureUserAgentSpecificMemory() answering at once instead of after the next GC.
SOAK_FLAGS = ["--js-flags=--expose-gc", "--enable-blink-features=ForceEagerMeasureMemory"]

# The page's own sentences (web/index.html) and query, then variations of them.
PAGE_SENTENCES = [
    "Boil water, add salt, then cook the spaghetti for nine minutes.",
    "The stock market fell sharply on Monday.",
    "A recipe for a quick tomato sauce.",
    "My cat sleeps on the keyboard all day.",
    "Python runs in the browser thanks to WebAssembly.",
    "The GPU multiplies matrices very quickly.",
    "Fresh basil makes any Italian dish better.",
]
SENTENCE_SETS = [
    PAGE_SENTENCES,
    PAGE_SENTENCES[:-1],  # one removed
    PAGE_SENTENCES + ["Investors worried that rising interest rates would slow the economy "
                      "and push the price of government bonds down for months."],  # longer
    PAGE_SENTENCES[::-1],  # reordered: same shapes, other rows
]
SET_ORDER = [0, 1, 0, 2, 0, 3]  # sets change every SET_RUN searches, in this order: the
# whole variety (every query with every set it meets, every shape) comes round every 30 searches
SET_RUN = 5
QUERIES = [  # 15 = 3 x SET_RUN: every 30 searches each set meets the same queries again
    "How do I cook pasta?", "cats", "stock prices today", "what is WebAssembly", "tomato",
    "fast matrix multiplication on graphics cards", "Italian herbs",
    "which fresh herb goes best with tomatoes and mozzarella in summer salads",  # 17 tokens
    "market crash", "my pet is lazy",
    "Python in a web page", "GPU", "How long should spaghetti boil before it is soft enough?",
    "a sauce for dinner", "Monday news about shares",
]

WARMUP_SHARE = 0.1  # at least one pass through every query and sentence set (warmup())
FLAT_SHARE = 0.005  # |slope| per 1,000 searches below this share of the start value is flat

# One sample on the Python side, defined once in the worker's globals so sampling itself makes
# no new classes or functions. mallinfo is dlmalloc's (emscripten's malloc): ten ints.
PY_SETUP = """\
import ctypes as _ctypes, gc as _gc
import pybridge_js as _pybridge_js


class _MallInfo(_ctypes.Structure):
    _fields_ = [(name, _ctypes.c_int) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_mallinfo = _ctypes.CDLL(None).mallinfo
_mallinfo.restype = _MallInfo


def _soak_sample():
    import pybridge.demo as demo

    _gc.collect()  # count what is alive, not garbage waiting for the collector
    return {"mallocBytes": _mallinfo().uordblks, "pyObjects": len(_gc.get_objects()),
            "gpuBuffers": demo._model.backend.live_buffers(), "shapes": len(demo._model._shapes)}


_pybridge_js.liveProxies()  # switches PyProxy allocation tracing on (web/bridge.js)
"""
PY_SAMPLE = "_soak_sample()"

# The worker's side: counters read straight from Pyodide's module, after a full JS GC.
WORKER_SAMPLE = """() => {
  gc();
  const m = self.pyodide._module;
  return {heapBytes: m.HEAPU8.buffer.byteLength, pyProxies: m.pyproxy_alloc_map.size,
          jsRefs: m._hiwire_num_refs()};
}"""

PAGE_MEMORY = """async () => {
  gc();
  const m = await performance.measureUserAgentSpecificMemory();
  const scope = (s) => m.breakdown.filter((b) => b.attribution.some((a) => a.scope === s))
                                  .reduce((sum, b) => sum + b.bytes, 0);
  return {uaBytes: m.bytes, workerJsBytes: scope('DedicatedWorkerGlobalScope'),
          windowJsBytes: scope('Window')};
}"""

# A run of searches exactly as the search box makes them (until `seconds` have passed); each
# answer is checked against the first answer to the same (query, set).
SEARCHES = """async ([jobs, seconds]) => {
  const out = [], start = performance.now();
  for (const [q, s, sentences] of jobs) {
    if (out.length && performance.now() - start > seconds * 1e3) break;
    const t0 = performance.now();
    try {
      const r = await pybridge.search(q, sentences);
      out.push({ms: performance.now() - t0, ranked: r.ranked.map((x) => [x.text, x.score]),
                tokens: r.tokens, timings: r.timingsMs, recovered: r.recovered});
    } catch (err) {
      out.push({ms: performance.now() - t0, error: String(err.message || err)});
    }
  }
  return out;
}"""

# Dawn: every search as the page's search box makes it (web/main.js search(): a "call" of
# pybridge.demo.search), made from JS by the runner with the worker's own code (web/call.js
# callPython, then toPlain), one call per search; dawn_answer reads each answer as SEARCHES
# reads the page's.
SEARCH_CALL = {"module": "pybridge.demo", "name": "search"}


def dawn_answer(a: dict) -> dict:
    """A runner call's answer ({ms, value} or {ms, error}) in SEARCHES's shape. JSON drops
    what toJs made undefined (None: `recovered`) and writes NaN as null; a property missing
    reads as None, as undefined reaches Playwright's caller."""
    if "error" in a:
        return {"ms": a["ms"], "error": a["error"]}
    r = a["value"]
    try:
        ranked = [[x["text"], math.nan if x["score"] is None else x["score"]]
                  for x in r["ranked"]]
        return {"ms": a["ms"], "ranked": ranked, "tokens": r.get("tokens"),
                "timings": r.get("timingsMs"), "recovered": r.get("recovered")}
    except (KeyError, TypeError, AttributeError) as e:  # SEARCHES fails on such an answer too
        return {"ms": a["ms"], "error": f"an answer of another shape ({e!r}): {str(r)[:200]}"}


# Dawn: GPU buffers created and not destroyed, counted at the WebGPU API by the runner
# (tools/gpu/buffers.mjs), and how many of those the JS GC has freed; nothing with --no-gpu.
DAWN_BUFFERS = """() => {
  const c = self.gpuBufferCounts;
  return c ? {gpuBuffersDawn: c.created - c.destroyed, gpuBuffersCollected: c.collected} : {};
}"""

# Dawn: Node's own memory, after a full JS GC (node --expose-gc).
NODE_MEMORY = """() => {
  gc();
  const m = process.memoryUsage();
  return {nodeJsBytes: m.heapUsed, nodeExternalBytes: m.external, nodeRss: m.rss};
}"""

METRICS = [  # (key, label, unit): unit "B" prints MiB, "" a count; a mode samples a subset
    ("heapBytes", "wasm heap", "B"),
    ("mallocBytes", "malloc in use", "B"),
    ("pyObjects", "Python objects", ""),
    ("gpuBuffers", "live GPU buffers", ""),
    ("gpuBuffersDawn", "GPU buffers (Dawn)", ""),  # Dawn: counted at the WebGPU API
    ("pyProxies", "live PyProxies", ""),
    ("jsRefs", "JS refs (JsProxies)", ""),
    ("workerJsBytes", "worker JS heap", "B"),  # Chromium
    ("pageJsBytes", "page JS heap", "B"),
    ("rendererRss", "renderer RSS", "B"),
    ("gpuProcessRss", "GPU process RSS", "B"),
    ("nodeJsBytes", "Node JS heap", "B"),  # Dawn
    ("nodeExternalBytes", "Node external", "B"),
    ("nodeRss", "Node RSS", "B"),
    ("nodeRssAnon", "Node RSS anonymous", "B"),
    ("gpuMemory", "GPU memory", "B"),
]
PROGRESS = {"heapBytes": "heap", "mallocBytes": "malloc", "gpuBuffers": "buffers",
            "gpuBuffersDawn": "dawn buffers",
            "pyProxies": "proxies", "jsRefs": "refs", "rendererRss": "renderer",
            "gpuProcessRss": "gpu", "nodeRss": "node", "nodeRssAnon": "anon",
            "gpuMemory": "vram"}  # a sample's line


def warmup(n: int) -> int:
    """Searches left out of the slopes: the first 10%, and at least one pass through the whole
    mix (30: caches filling once are not leaks), but never half the run."""
    return min(max(int(n * WARMUP_SHARE), len(SET_ORDER) * SET_RUN, len(QUERIES)), n // 2)


def job(i: int, keep: int = 0) -> tuple[str, int, list[str]]:
    """The i-th search: (query, sentence set index, sentences); `keep` > 0 keeps the last
    `keep` sentences of each set (the sets still differ: the one added is last)."""
    s = SET_ORDER[(i // SET_RUN) % len(SET_ORDER)]
    return QUERIES[i % len(QUERIES)], s, SENTENCE_SETS[s][-keep:] if keep else SENTENCE_SETS[s]


def shapes(n: int, keep: int, vocab: Path, max_length: int, pad: int) -> dict[str, int]:
    """How many of the first n searches run each (batch, tokens) shape, as the model pads them
    (`pad`: its pad_tokens_to, 16 on a GPU, 1 on a CPU device such as SwiftShader)."""
    from pybridge.tokenizer import WordPiece

    tokenizer = WordPiece.from_vocab_text(vocab.read_text())
    count: dict[str, int] = {}
    for i in range(n):
        q, _, sentences = job(i, keep)
        B, T = tokenizer.encode_batch([q, *sentences], max_length, pad).ids.shape
        count[f"{B} x {T}"] = count.get(f"{B} x {T}", 0) + 1
    return count


class Target(Protocol):
    """Where the searches run: the page in Chromium, or its stack under Node on Dawn."""

    def js(self, fn: str) -> Any: ...  # call a JS function (source) where Pyodide lives
    def py(self, code: str) -> Any: ...  # run Python there; the last expression's value
    def memory(self) -> dict[str, int]: ...  # the mode's own metrics
    def searches(self, jobs: list, seconds: float) -> list[dict]: ...


@dataclass
class Run:
    """A booted target and what the report says about it."""

    target: Target
    mode: str  # "chromium" | "dawn"
    runtime: str  # one line: engine, version, GPU
    vocab: Path  # the model's vocab.txt, for shapes()
    about: dict[str, Any] = field(default_factory=dict)  # extra JSON fields


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (this benchmark's Playwright driver, its Chromium), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def chromium_rss() -> dict[str, int]:
    """VmRSS (bytes) of this benchmark's tab (its largest renderer process: the page, its worker,
    the wasm heap) and of its GPU process. Chromium rewrites its command lines with spaces."""
    rss = {"rendererRss": 0, "gpuProcessRss": 0}
    kinds = {b"--type=renderer": "rendererRss", b"--type=gpu-process": "gpuProcessRss"}
    for pid in descendants(os.getpid()):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        key = next((kinds[a] for a in args if a in kinds), None)
        if key:
            kb = next(int(line.split()[1]) for line in status.splitlines()
                      if line.startswith("VmRSS:"))
            rss[key] = max(rss[key], kb * 1024)
    return rss


class PageTarget:
    """The demo page in headless Chromium (Playwright): its worker, its search box's call."""

    def __init__(self, page, worker, cdp) -> None:
        self.page, self.worker, self.cdp, self.app = page, worker, cdp, App(page)

    def js(self, fn: str) -> Any:
        return self.worker.evaluate(fn)

    def py(self, code: str) -> Any:
        return self.app.py(code)

    def memory(self) -> dict[str, int]:
        s = self.page.evaluate(PAGE_MEMORY)
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        s["pageJsBytes"] = int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))
        s.update(chromium_rss())
        return s

    def searches(self, jobs: list, seconds: float) -> list[dict]:
        return self.page.evaluate(SEARCHES, [[list(j) for j in jobs], seconds])


def gpu_memory() -> dict[str, int]:
    """{"gpuMemory": bytes in use on the first GPU} from nvidia-smi, or {} where it does not
    answer."""
    if shutil.which("nvidia-smi") is None:
        return {}
    proc = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,"
                           "nounits"], capture_output=True, text=True)
    try:
        return {"gpuMemory": int(proc.stdout.split()[0]) << 20}  # MiB
    except (IndexError, ValueError):
        return {}


class NodeTarget:
    """The page's stack under Node (tools/gpu/runner.mjs, a NodeApp started with
    --expose-gc): Python through the runner's requests, JS in its global scope."""

    def __init__(self, app) -> None:
        self.app = app
        self.nvidia = bool(gpu_memory())  # asked once: a run samples the same metrics throughout

    def js(self, fn: str) -> Any:
        return self.app.js(fn)

    def py(self, code: str) -> Any:
        return self.app.py(code)

    def memory(self) -> dict[str, int]:
        status = Path(f"/proc/{self.app.proc.pid}/status").read_text()
        anon = next(int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("RssAnon:"))
        return {**self.js(NODE_MEMORY), **self.js(DAWN_BUFFERS), "nodeRssAnon": anon * 1024,
                **(gpu_memory() if self.nvidia else {})}

    def searches(self, jobs: list, seconds: float) -> list[dict]:
        calls = [{**SEARCH_CALL, "args": [q, sentences]} for q, _, sentences in jobs]
        return [dawn_answer(a) for a in self.app.calls(calls, seconds)]


@contextmanager
def chromium(dtype: str) -> Iterator[Run]:
    """The demo page in headless Chromium, WebGPU on SwiftShader, after its first search."""
    from playwright.sync_api import sync_playwright

    server = start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=CHROMIUM_FLAGS + WEBGPU_FLAGS + SOAK_FLAGS)
            page = new_context(browser).new_page()
            page.set_default_timeout(900_000)
            page.goto(server.url + (f"?dtype={dtype}" if dtype else ""))
            if wait_final(page) != "ready":
                raise SystemExit(f"page failed: {page.evaluate('pybridge.error')}")
            page.wait_for_function("pybridge.error || pybridge.lastSearch", timeout=900_000)
            if page.evaluate("pybridge.error"):
                raise SystemExit(f"the model failed: {page.evaluate('pybridge.error')}")
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            info = page.evaluate("pybridge.modelInfo")
            yield Run(PageTarget(page, page.workers[0], cdp), "chromium",
                      f"Chromium {browser.version} headless, WebGPU via SwiftShader",
                      ROOT / "build" / "site" / "models" / "all-MiniLM-L6-v2" / "vocab.txt",
                      {"dtype": info["dtype"]})
            browser.close()
    finally:
        server.stop()


@contextmanager
def dawn(packdir: str, dtype: str, log: Path) -> Iterator[Run]:
    """The page's stack under Node on Dawn, from a pack (or this checkout: "checkout"), with
    the demo's model loaded as the page loads it."""
    from tools.gpu import pack
    from tools.gpu.model_files import model_folder, prepare_model
    from tools.gpu.node_app import NoAdapter, NodeApp

    runtime = pack.local_runtime() if packdir == "checkout" else pack.unpack(Path(packdir))
    env, vulkan = pack.vulkan_env(runtime)
    weights = prepare_model(runtime.model)  # real where carried, else random in their layout
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    try:
        app = NodeApp(runtime.node, runtime.webgpu, runtime.pyodide, runtime.web,
                      {"/models/all-MiniLM-L6-v2/": model_folder()}, log=log, env=env,
                      node_flags=("--expose-gc",))
    except NoAdapter as e:
        print(f"bench soak: no WebGPU adapter: {e}. {vulkan}; log: {log}")
        raise SystemExit(3) from None
    with app:
        dtype = dtype or "float16"  # the page's default
        info = app.py("import pybridge.demo as demo\n"
                      f"await demo.load_model({app.origin + '/models/all-MiniLM-L6-v2/'!r}, "
                      f"{dtype!r})")
        a = app.adapter["info"]
        gpu = " / ".join(str(a[k]) for k in ("vendor", "architecture", "device", "description")
                         if a.get(k))
        yield Run(NodeTarget(app), "dawn",
                  f"Dawn ({runtime.about['webgpu_package']}) under Node {app.ready['node']}, "
                  f"Pyodide {app.ready['pyodide']}, adapter {gpu}",
                  runtime.model / "vocab.txt",
                  {"dtype": dtype, "weights": weights[dtype], "load_ms": info["loadMs"],
                   "adapter": app.adapter, "vulkan": vulkan, "pack": runtime.about,
                   "versions": {k: app.ready[k] for k in ("node", "pyodide", "python",
                                                           "numpy", "pybridge")}})


def sample(target: Target, done: int, elapsed: float) -> dict:
    """One sample, after full GCs: the worker-side counters, then Python's, then the mode's."""
    s = {"searches": done, "seconds": round(elapsed, 1)}
    s.update(target.js(WORKER_SAMPLE))
    s.update(target.py(PY_SAMPLE))
    s.update(target.memory())
    return s


def progress(s: dict, problems: int) -> str:
    units = {key: unit for key, _, unit in METRICS}
    parts = [f"{name} {fmt(s[key], units[key])}" for key, name in PROGRESS.items() if key in s]
    return (f"  {s['searches']:>6} searches {s['seconds']:>7.0f} s  " + "  ".join(parts)
            + (f"  {problems} problems" if problems else ""))


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over xs and its standard error."""
    n = len(xs)
    if n < 3 or len(set(xs)) < 2:
        return 0.0, math.inf
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    return slope, math.sqrt(resid / (n - 2) / sxx)


def summarize(samples: list[dict], warm: int) -> list[dict]:
    """Per metric every sample has (a mode samples its own subset of METRICS): start, end,
    slope per 1,000 searches after the warm-up, verdict."""
    after = [s for s in samples if s["searches"] >= warm] or samples[-1:]
    xs = [s["searches"] / 1000 for s in after]
    half = len(after) // 2
    rows = []
    for key, label, unit in METRICS:
        if not all(key in s for s in samples):
            continue
        ys = [float(s[key]) for s in after]
        slope, se = fit(xs, ys)  # per 1,000 searches
        early, _ = fit(xs[: half + 1], ys[: half + 1])
        late, _ = fit(xs[half:], ys[half:])
        start, end = ys[0], ys[-1]
        # counts (buffers, proxies, refs, objects) must not move at all: any trend beyond
        # noise is growth; bytes may wander within a share of where they started
        limit = FLAT_SHARE * abs(start) if unit else 0.0
        if len(ys) < 3:
            verdict = "unclear"  # too few samples after the warm-up for a slope
        elif max(ys) == min(ys) or (abs(slope) + 2 * se <= limit if unit
                                    else abs(slope) - 2 * se <= 0):  # a count: no trend
            verdict = "flat"
        elif abs(slope) - 2 * se > limit:
            verdict = "GROWS" if slope > 0 else "shrinks"
            if slope > 0 and len(ys) >= 6 and late < early / 2 and late <= limit:
                verdict = "GROWS, levels off"  # a cache or pool filled up: flat by the end
        else:
            verdict = "unclear"
        rows.append({"metric": key, "label": label, "unit": unit, "boot": samples[0][key],
                     "start": start, "end": end, "min": min(ys), "max": max(ys),
                     "slope_per_1000": slope, "slope_se": se, "first_half_slope": early,
                     "last_half_slope": late, "flat_below": limit, "verdict": verdict})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"  {'metric':<20}{'boot':>11}{'start':>11}{'end':>11}{'slope /1k':>13}{'± se':>11}"
             f"{'last half':>12}{'flat below':>11}  verdict"]
    for r in rows:
        u = r["unit"]
        lines.append(f"  {r['label']:<20}{fmt(r['boot'], u):>11}{fmt(r['start'], u):>11}"
                     f"{fmt(r['end'], u):>11}{fmt(r['slope_per_1000'], u):>13}"
                     f"{fmt(r['slope_se'], u):>11}{fmt(r['last_half_slope'], u):>12}"
                     f"{fmt(r['flat_below'], u):>11}  {r['verdict']}")
    return "\n".join(lines)


def fmt(v: float, unit: str) -> str:
    if unit == "B":
        return f"{v / (1 << 20):.2f} MiB"
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2f}"


def check(answers: list[dict], first: dict, jobs: list) -> list[str]:
    """Problems with these answers: an error; a device lost and the model reloaded (that resets
    what the soak measures); a sentence missing, repeated or out of order; a score not finite
    or moved from the first answer to the same query and set."""
    bad = []
    for a, (q, s, sentences) in zip(answers, jobs):
        if "error" in a:
            bad.append(f"{q!r} set {s}: {a['error']}")
            continue
        if a.get("recovered"):
            bad.append(f"{q!r} set {s}: {a['recovered']}")
        texts = [t for t, _ in a["ranked"]]
        scores = dict(a["ranked"])
        if sorted(texts) != sorted(sentences) or not all(map(math.isfinite, scores.values())):
            bad.append(f"{q!r} set {s}: ranked {len(texts)} of {len(sentences)} sentences")
            continue
        ordered = [sc for _, sc in a["ranked"]]
        if any(x < y for x, y in zip(ordered, ordered[1:])):
            bad.append(f"{q!r} set {s}: not ranked by score")
        ref = first.setdefault((q, s), scores)
        moved = max(abs(scores[t] - ref[t]) for t in sentences)
        if moved > 1e-4:
            bad.append(f"{q!r} set {s}: a score moved by {moved:.2e}")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dawn", nargs="?", const="checkout", metavar="PACKDIR",
                    help="run the page's stack under Node on Dawn (a real GPU) from a pack "
                         "(tools/bench_gpu.py --pack), or alone: from this checkout")
    ap.add_argument("--searches", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=0, help="searches between samples (default: "
                    "searches / 100)")
    ap.add_argument("--every-s", type=float, default=60, help="or seconds, if sooner")
    ap.add_argument("--minutes", type=float, default=0, help="stop after this long (0: never)")
    ap.add_argument("--sentences", type=int, default=0, help="keep this many sentences of each "
                    "set (default: all, 6 to 8; fewer make each search faster on SwiftShader)")
    ap.add_argument("--dtype", default="", help="the model's weights (default: the page's)")
    ap.add_argument("--out", type=Path, help="default bench-results/soak.json (Dawn: "
                    "soak-dawn.json)")
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / "bench-results" / ("soak-dawn.json" if args.dawn else "soak.json")
    every = args.every or max(1, args.searches // 100)

    samples, times, problems = [], [], []
    first: dict = {}
    stopped = "done"
    boot = (dawn(args.dawn, args.dtype, args.out.with_name(args.out.stem + "-node.log"))
            if args.dawn else chromium(args.dtype))
    with boot as run:
        target = run.target
        target.py(PY_SETUP)
        max_length, pad = target.py("import pybridge.demo as demo\n"
                                    "[demo._model.max_length, demo._model.pad_tokens_to]")
        via = ("window.pybridge.search" if run.mode == "chromium" else
               "web/call.js callPython(pybridge.demo.search), as web/worker.js calls it")
        print(f"soak ({run.mode}): {args.searches:,} searches through {via}, "
              f"all-MiniLM-L6-v2 ({run.about['dtype']}"
              f"{', ' + run.about['weights'] + ' weights' if 'weights' in run.about else ''}) in "
              f"{run.runtime}; {platform.machine()}, {os.cpu_count()} cores; "
              f"{args.sentences or 'all'} sentences a set; sample every {every} searches "
              f"or {args.every_s:g} s", flush=True)
        t0 = time.perf_counter()
        samples.append(sample(target, 0, 0.0))
        done = 0
        while done < args.searches:
            end = min(done + every, args.searches)
            jobs = [job(i, args.sentences) for i in range(done, end)]
            try:
                answers = target.searches(jobs, args.every_s)
            except Exception as e:  # the tab or runner crashed or hung: report what was measured
                stopped = f"{run.mode} failed after {done} searches: {str(e)[-2000:]}"
                break
            times += [a["ms"] for a in answers]
            problems += check(answers, first, jobs)
            done += len(answers)
            elapsed = time.perf_counter() - t0
            samples.append(sample(target, done, elapsed))
            print(progress(samples[-1], len(problems)), flush=True)
            if args.minutes and elapsed > args.minutes * 60:
                stopped = f"stopped by --minutes {args.minutes:g} after {done} searches"
                break
        wall = time.perf_counter() - t0

    done = samples[-1]["searches"]
    warm = warmup(done)
    rows = summarize(samples, warm)
    rate = done / wall if wall else 0.0
    times = times or [0.0]
    print(f"\n  {done:,} searches in {wall / 60:.1f} min: {rate:.3f} searches/s, median "
          f"{statistics.median(times):.1f} ms, slowest {max(times):.1f} ms; "
          f"{len(problems)} wrong or failed answers; slopes after {warm} warm-up searches")
    print(table(rows))
    for line in problems[:10]:
        print(f"  problem: {line}")
    if stopped != "done":
        print(f"  {stopped}")
    write_result(args.out, {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.node()} ({os.cpu_count()} cores)",
        "mode": run.mode, "runtime": run.runtime, **run.about,
        "searches": done, "asked": args.searches, "every": every,
        "warmup_searches": warm, "wall_s": wall, "searches_per_s": rate,
        "search_ms": {"median": statistics.median(times), "max": max(times),
                      "p95": sorted(times)[int(0.95 * (len(times) - 1))]},
        "sentences": args.sentences or "all",
        "shapes": shapes(done, args.sentences, run.vocab, max_length, pad),
        "problems": problems, "stopped": stopped, "metrics": rows, "samples": samples,
    })
    counts_grow = [r["label"] for r in rows if not r["unit"] and r["verdict"].startswith("GROWS")]
    if counts_grow:
        print(f"  LEAK: {', '.join(counts_grow)} grew")
    return 1 if problems or " failed after " in stopped or counts_grow else 0


if __name__ == "__main__":
    sys.exit(main())
