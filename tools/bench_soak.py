"""Soak benchmark: many searches in the demo page, and whether memory and handles stay flat.

    python3 tools/dev.py bench soak [--searches 10000] [--every N] [--every-s S] [--minutes M]
                                    [--sentences K] [--out FILE]

Boots the demo page as a visitor gets it (all-MiniLM-L6-v2, float16), waits for its first
search, then runs `--searches` searches through `window.pybridge.search(query, sentences)`,
the call the page's search box makes. Queries rotate through a pool of 15 and the sentences
through four sets (the page's seven, one removed, one longer added, reordered), changing every
5 searches; the whole mix repeats every 30 searches. That makes five (batch, tokens) shapes,
so the model's two-shape plan cache builds and frees a plan in about one search in six, and
the tokenizer's cache sees the same bounded vocabulary. Every answer is checked: all sentences
ranked, scores finite, and equal (1e-4) to the first answer to the same query and set.

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
- worker JS heap: `performance.measureUserAgentSpecificMemory()`, its DedicatedWorkerGlobalScope
  share (the page is cross-origin isolated; `ForceEagerMeasureMemory` answers at once);
- page JS heap: CDP `Performance.getMetrics` JSHeapUsedSize of the page;
- renderer RSS: VmRSS of the tab's renderer process (page, worker, wasm heap, V8 heaps);
- GPU process RSS: VmRSS of the GPU process (on SwiftShader the GPU buffers live there).

Per metric: the value at the first sample after the warm-up (the first 10% of searches, at
least one pass through every query and set), the last value, and the least-squares slope per
1,000 searches over the samples after the warm-up with its standard error. Verdict: "flat"
when |slope| is below 0.5% of the start value per 1,000 searches (under 5% over 10,000), or
below one per 1,000 for a count, or a count never moved; "GROWS" when the slope less two
standard errors is still above that ("GROWS, slowing" when the slope over the last half of
those samples is under half the slope over the first half: a cache or pool filling up, which a
longer run tells from a leak); otherwise "unclear" (too few searches or samples to tell).

Headless Debian Chromium, WebGPU on SwiftShader: a search takes seconds here, so `--minutes`
stops early and reports the count reached. Prints a compact table; writes
bench-results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.harness import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    WEBGPU_FLAGS,
    App,
    new_context,
    start_server,
    wait_final,
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

METRICS = [  # (key, label, unit): unit "B" prints MiB, "" a count
    ("heapBytes", "wasm heap", "B"),
    ("mallocBytes", "malloc in use", "B"),
    ("pyObjects", "Python objects", ""),
    ("gpuBuffers", "live GPU buffers", ""),
    ("pyProxies", "live PyProxies", ""),
    ("jsRefs", "JS refs (JsProxies)", ""),
    ("workerJsBytes", "worker JS heap", "B"),
    ("pageJsBytes", "page JS heap", "B"),
    ("rendererRss", "renderer RSS", "B"),
    ("gpuProcessRss", "GPU process RSS", "B"),
]


def warmup(n: int) -> int:
    """Searches left out of the slopes: the first 10%, and at least one pass through the whole
    mix (30: caches filling once are not leaks), but never half the run."""
    return min(max(int(n * WARMUP_SHARE), len(SET_ORDER) * SET_RUN, len(QUERIES)), n // 2)


def job(i: int, keep: int = 0) -> tuple[str, int, list[str]]:
    """The i-th search: (query, sentence set index, sentences); `keep` > 0 keeps the last
    `keep` sentences of each set (the sets still differ: the one added is last)."""
    s = SET_ORDER[(i // SET_RUN) % len(SET_ORDER)]
    return QUERIES[i % len(QUERIES)], s, SENTENCE_SETS[s][-keep:] if keep else SENTENCE_SETS[s]


def shapes(n: int, keep: int = 0) -> dict[str, int]:
    """How many of the first n searches run each (batch, tokens) shape (the CPython tokenizer;
    on a CPU device the page pads to the longest text, not to a multiple of 16)."""
    from pybridge.tokenizer import WordPiece

    vocab = ROOT / "build" / "site" / "models" / "all-MiniLM-L6-v2" / "vocab.txt"
    tokenizer = WordPiece.from_vocab_text(vocab.read_text())
    count: dict[str, int] = {}
    for i in range(n):
        q, _, sentences = job(i, keep)
        key = f"{len(sentences) + 1} x {max(len(tokenizer.encode(t)) for t in [q, *sentences])}"
        count[key] = count.get(key, 0) + 1
    return count


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


def sample(app: App, worker, cdp, done: int, elapsed: float) -> dict:
    s = {"searches": done, "seconds": round(elapsed, 1)}
    s.update(worker.evaluate(WORKER_SAMPLE))
    s.update(app.py(PY_SAMPLE))
    s.update(app.page.evaluate(PAGE_MEMORY))
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    s["pageJsBytes"] = int(metrics["JSHeapUsedSize"])
    s.update(chromium_rss())
    return s


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
    after = [s for s in samples if s["searches"] >= warm] or samples[-1:]
    xs = [s["searches"] / 1000 for s in after]
    half = len(after) // 2
    rows = []
    for key, label, unit in METRICS:
        ys = [float(s[key]) for s in after]
        slope, se = fit(xs, ys)  # per 1,000 searches
        early, _ = fit(xs[: half + 1], ys[: half + 1])
        late, _ = fit(xs[half:], ys[half:])
        start, end = ys[0], ys[-1]
        limit = max(FLAT_SHARE * abs(start), 0 if unit else 1)
        if len(ys) < 3:
            verdict = "unclear"  # too few samples after the warm-up for a slope
        elif abs(slope) < limit or (not unit and max(ys) == min(ys)):
            verdict = "flat"
        elif abs(slope) - 2 * se > limit:
            verdict = "GROWS" if slope > 0 else "shrinks"
            if slope > 0 and len(ys) >= 6 and late < early / 2:
                verdict = "GROWS, slowing"  # a cache or pool filling up, or a slow start
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
    """Problems with these answers (an error, a sentence missing, a score that moved)."""
    bad = []
    for a, (q, s, sentences) in zip(answers, jobs):
        if "error" in a:
            bad.append(f"{q!r} set {s}: {a['error']}")
            continue
        scores = dict(a["ranked"])
        if sorted(scores) != sorted(sentences) or not all(map(math.isfinite, scores.values())):
            bad.append(f"{q!r} set {s}: ranked {len(scores)} of {len(sentences)}")
            continue
        ref = first.setdefault((q, s), scores)
        moved = max(abs(scores[t] - ref[t]) for t in sentences)
        if moved > 1e-4:
            bad.append(f"{q!r} set {s}: a score moved by {moved:.2e}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--searches", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=0, help="searches between samples (default: "
                    "searches / 100)")
    ap.add_argument("--every-s", type=float, default=60, help="or seconds, if sooner")
    ap.add_argument("--minutes", type=float, default=0, help="stop after this long (0: never)")
    ap.add_argument("--sentences", type=int, default=0, help="keep this many sentences of each "
                    "set (default: all, 6 to 8; fewer make each search faster on SwiftShader)")
    ap.add_argument("--dtype", default="", help="?dtype= for the page (default: the page's)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "soak.json")
    args = ap.parse_args()
    every = args.every or max(1, args.searches // 100)

    from playwright.sync_api import sync_playwright

    server = start_server()
    samples, times, problems = [], [], []
    first: dict = {}
    stopped = "done"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=CHROMIUM_FLAGS + WEBGPU_FLAGS + SOAK_FLAGS)
            version = browser.version
            page = new_context(browser).new_page()
            page.set_default_timeout(900_000)
            page.goto(server.url + (f"?dtype={args.dtype}" if args.dtype else ""))
            if wait_final(page) != "ready":
                raise SystemExit(f"page failed: {page.evaluate('pybridge.error')}")
            page.wait_for_function("pybridge.error || pybridge.lastSearch", timeout=900_000)
            if page.evaluate("pybridge.error"):
                raise SystemExit(f"the model failed: {page.evaluate('pybridge.error')}")
            app, worker = App(page), page.workers[0]
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            app.py(PY_SETUP)
            info = page.evaluate("pybridge.modelInfo")
            print(f"soak: {args.searches:,} searches through pybridge.search, all-MiniLM-L6-v2 "
                  f"({info['dtype']}) in Chromium {version} headless, WebGPU via SwiftShader; "
                  f"{platform.machine()}, {os.cpu_count()} cores; "
                  f"{args.sentences or 'all'} sentences a set; sample every {every} searches "
                  f"or {args.every_s:g} s")
            t0 = time.perf_counter()
            samples.append(sample(app, worker, cdp, 0, 0.0))
            done = 0
            while done < args.searches:
                end = min(done + every, args.searches)
                jobs = [job(i, args.sentences) for i in range(done, end)]
                try:
                    answers = page.evaluate(SEARCHES, [[list(j) for j in jobs], args.every_s])
                except Exception as e:  # the tab crashed or hung: report what was measured
                    stopped = f"page failed after {done} searches: {e}"
                    break
                times += [a["ms"] for a in answers]
                problems += check(answers, first, jobs)
                done += len(answers)
                elapsed = time.perf_counter() - t0
                samples.append(sample(app, worker, cdp, done, elapsed))
                s = samples[-1]
                print(f"  {done:>6} searches {elapsed:>7.0f} s  heap {s['heapBytes'] >> 20} MiB  "
                      f"malloc {s['mallocBytes'] / (1 << 20):.1f} MiB  buffers {s['gpuBuffers']}  "
                      f"proxies {s['pyProxies']}  refs {s['jsRefs']}  "
                      f"renderer {s['rendererRss'] >> 20} MiB  gpu {s['gpuProcessRss'] >> 20} MiB"
                      f"{'  ' + str(len(problems)) + ' problems' if problems else ''}", flush=True)
                if args.minutes and elapsed > args.minutes * 60:
                    stopped = f"stopped by --minutes {args.minutes:g} after {done} searches"
                    break
            wall = time.perf_counter() - t0
            browser.close()
    finally:
        server.stop()

    done = samples[-1]["searches"]
    warm = warmup(done)
    rows = summarize(samples, warm)
    rate = done / wall if wall else 0.0
    times = times or [0.0]
    print(f"\n  {done:,} searches in {wall / 60:.1f} min: {rate:.3f} searches/s, median "
          f"{statistics.median(times) / 1e3:.2f} s, slowest {max(times) / 1e3:.2f} s; "
          f"{len(problems)} wrong or failed answers; slopes after {warm} warm-up searches")
    print(table(rows))
    for line in problems[:10]:
        print(f"  problem: {line}")
    if stopped != "done":
        print(f"  {stopped}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.node()} ({os.cpu_count()} cores)",
        "browser": f"Chromium {version} headless, WebGPU via SwiftShader",
        "dtype": info["dtype"], "searches": done, "asked": args.searches, "every": every,
        "warmup_searches": warm, "wall_s": wall, "searches_per_s": rate,
        "search_ms": {"median": statistics.median(times), "max": max(times),
                      "p95": sorted(times)[int(0.95 * (len(times) - 1))]},
        "sentences": args.sentences or "all", "shapes": shapes(done, args.sentences),
        "problems": problems, "stopped": stopped, "metrics": rows, "samples": samples,
    }, indent=1))
    print(f"  wrote {args.out}")
    return 1 if problems or stopped.startswith("page failed") else 0


if __name__ == "__main__":
    sys.exit(main())
