"""Boot benchmark: navigation -> Python + numpy ready, first load vs cached load, and bytes.

    python3 tools/dev.py bench boot [--runs 3]

Headless Debian Chromium (WebGPU through SwiftShader) against the dev server on 127.0.0.1.
A first load uses a fresh browser context (empty HTTP cache); the cached load reloads the
same context. Bytes are the transfer sizes the page and its worker report (Resource Timing):
what crossed the network, headers included, after gzip. Prints a compact table and writes
bench-results/boot.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.harness import launch, new_context, start_server, write_result  # noqa: E402

READY = "window.pybridge && ['python-ready', 'ready', 'error'].includes(pybridge.state)"
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const page = [nav, ...performance.getEntriesByType('resource')];
  const all = page.concat(pybridge.workerResources || []);
  const sum = (k) => all.reduce((s, e) => s + (e[k] || 0), 0);
  return {state: pybridge.state, error: pybridge.error, pythonReadyMs: pybridge.timings.pythonReady,
          stages: pybridge.stages, requests: all.length,
          transferBytes: sum('transferSize'), decodedBytes: sum('decodedBodySize')};
}"""


def load(page, url: str) -> dict:
    page.goto(url)
    page.wait_for_function(READY, timeout=180_000)
    m = page.evaluate(MEASURE)
    if m["state"] not in ("python-ready", "ready"):
        raise SystemExit(f"boot failed: {m['state']}: {m['error']}")
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "boot.json")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    server = start_server()
    url = server.url
    first, cached = [], []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            version = browser.version
            for _ in range(args.runs):
                ctx = new_context(browser)  # empty HTTP cache
                page = ctx.new_page()
                first.append(load(page, url))
                cached.append(load(page, url))  # same context: HTTP cache warm
                ctx.close()
            browser.close()
    finally:
        server.stop()

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.node()} ({__import__('os').cpu_count()} cores)",
        "browser": f"Chromium {version} headless, WebGPU via SwiftShader",
        "runs": args.runs,
        "first": {"pythonReadyMs": med(first, "pythonReadyMs"),
                  "transferBytes": med(first, "transferBytes"),
                  "decodedBytes": med(first, "decodedBytes"), "requests": med(first, "requests")},
        "cached": {"pythonReadyMs": med(cached, "pythonReadyMs"),
                   "transferBytes": med(cached, "transferBytes"),
                   "decodedBytes": med(cached, "decodedBytes"), "requests": med(cached, "requests")},
        "raw": {"first": first, "cached": cached},
    }
    f, c = result["first"], result["cached"]
    result["cachedOverFirst"] = c["pythonReadyMs"] / f["pythonReadyMs"]
    print(f"boot: navigation -> Python+numpy ready  ({result['browser']}, median of {args.runs})")
    print(f"  {'load':<8}{'ready':>10}{'transferred':>14}{'decoded':>12}{'requests':>10}")
    for name, row in (("first", f), ("cached", c)):
        print(f"  {name:<8}{row['pythonReadyMs'] / 1000:>9.2f}s{row['transferBytes'] / 1e6:>12.2f}MB"
              f"{row['decodedBytes'] / 1e6:>10.2f}MB{row['requests']:>10.0f}")
    print(f"  cached/first time ratio: {result['cachedOverFirst']:.2f}")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
