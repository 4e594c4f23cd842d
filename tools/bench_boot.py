"""Boot benchmark: from navigation to the first answer, first load against cached loads, as a
waterfall.

    python3 tools/dev.py bench boot [--runs 3] [--model none]

Headless Debian Chromium (WebGPU through SwiftShader) against the dev server on 127.0.0.1.
Each run starts Chromium with a new profile folder (an empty disk cache and no Python
snapshot, as a person's browser has them: Playwright's usual contexts keep their HTTP cache in
memory, and the 45 MB of weights pushed Pyodide's files out of it) and loads the demo page
three times in it, then once in another new profile:
  first     nothing cached: every file downloads, Python starts normally and makes its snapshot
            (and keeps numpy and pybridge as installed, with their bytecode)
  cached    the HTTP cache warm, Python restored from the snapshot, the packages installed
  cached, no snapshot   the same, with ?snapshot=off (no packages kept either): what they
            save, side by side
            (the two cached loads take turns going first, run by run)
  first, no snapshot    a first load with ?snapshot=off: what making the snapshot costs
Milestones are ms since navigation: Python ready (numpy and pybridge imported), the model's
weights on the GPU with its pipelines compiled, the first search answered. The waterfall is
the page's own timeline (`pybridge.spans`: the worker's stages and what overlaps them). On
SwiftShader the search itself and the kernels' compilation run on the CPU: report them, but
they are not what a GPU does. Bytes are the transfer sizes the page and its worker report
(Resource Timing): what crossed the network, headers included, after gzip. Prints compact
tables and writes bench-results/boot.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.harness import (CHROMIUM, CHROMIUM_FLAGS, WEBGPU_FLAGS, machine, page_adapter,  # noqa: E402
                           start_server, write_result)

# the loads of one run: (name, URL parameter, a new profile first?)
LOADS = {"first": ("", True), "cached": ("", False), "cached, no snapshot": ("snapshot=off", False),
         "first, no snapshot": ("snapshot=off", True)}
MILESTONES = {"Python ready": "pythonReady", "model on the GPU": "modelReady",
              "first answer": "firstAnswer"}
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const page = [nav, ...performance.getEntriesByType('resource')];
  const all = page.concat(pybridge.workerResources || []);
  const sum = (k) => all.reduce((s, e) => s + (e[k] || 0), 0);
  return {state: pybridge.state, error: pybridge.error, model: pybridge.model,
          timings: pybridge.timings, spans: pybridge.spans, boot: pybridge.boot,
          modelInfo: pybridge.modelInfo, requests: all.length,
          transferBytes: sum('transferSize'), decodedBytes: sum('decodedBodySize')};
}"""


def load(page, url: str, model: bool) -> dict:
    page.goto(url)
    done = ("pybridge.timings.firstAnswer || pybridge.model === 'error'" if model
            else "pybridge.state === 'ready'")
    page.wait_for_function(f"window.pybridge && (pybridge.state === 'error' || {done})",
                           timeout=600_000)
    m = page.evaluate(MEASURE)
    if m["state"] == "error" or m["model"] == "error":
        raise SystemExit(f"boot failed: {m['state']}/{m['model']}: {m['error']}")
    return m


def median_spans(rows: list[dict]) -> list[tuple[str, float, float]]:
    """(name, median start, median end) of each span over the runs of one load, in ms since
    navigation, by start (the waterfall; tools/report.py draws the same)."""
    names: list[str] = []
    for r in rows:
        for s in r["spans"]:
            if s["name"] not in names:
                names.append(s["name"])
    spans = []
    for name in names:
        got = [next(s for s in r["spans"] if s["name"] == name) for r in rows
               if any(s["name"] == name for s in r["spans"])]
        spans.append((name, statistics.median(s["start"] for s in got),
                      statistics.median(s["end"] for s in got)))
    return sorted(spans, key=lambda s: s[1])


def waterfall(rows: list[dict], width: int = 60) -> list[str]:
    """Median start and end of each span over the runs, drawn as bars on one time axis."""
    spans = median_spans(rows)
    total = max(end for _, _, end in spans)
    scale = width / total
    lines = []
    for name, start, end in spans:
        a = int(start * scale)
        b = max(a + 1, int(round(end * scale)))
        lines.append(f"  {name[:30]:<30}{start / 1e3:>6.2f}{end / 1e3:>7.2f} s |"
                     f"{' ' * a}{'█' * (b - a)}{' ' * (width - b)}|")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", choices=["float16", "float32", "none"], default="float16",
                    help="the demo model's weights, or none (then: Python ready and the kernel)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "boot.json")
    args = ap.parse_args()
    model = args.model != "none"
    query = "model=none" if not model else f"dtype={args.model}"

    from playwright.sync_api import sync_playwright

    server = start_server()
    rows: dict[str, list[dict]] = {k: [] for k in LOADS}
    version = "?"
    adapter: dict = {}
    try:
        with sync_playwright() as p:
            for run in range(args.runs):
                order = list(LOADS)
                if run % 2:  # the two cached loads in the other order: no order bias
                    order[1], order[2] = order[2], order[1]
                ctx = profile = None
                for name in order:
                    extra, fresh = LOADS[name]
                    if fresh:
                        if ctx:
                            ctx.close()
                            shutil.rmtree(profile, ignore_errors=True)
                        profile = tempfile.mkdtemp(prefix="pybridge-boot-")
                        ctx = p.chromium.launch_persistent_context(
                            profile, executable_path=str(CHROMIUM), headless=True,
                            args=CHROMIUM_FLAGS + WEBGPU_FLAGS, bypass_csp=True)  # see new_context
                        page = ctx.pages[0] if ctx.pages else ctx.new_page()
                    rows[name].append(load(page, f"{server.url}?{query}"
                                                 + (f"&{extra}" if extra else ""), model))
                    if name == "first":  # the snapshot and packages are stored in the background
                        page.wait_for_function("pybridge.boot.stored !== undefined && "
                                               "pybridge.boot.packagesStored !== undefined",
                                               timeout=120_000)
                version = ctx.new_cdp_session(page).send("Browser.getVersion")["product"]
                version = version.split("/")[-1]  # "HeadlessChrome/156.0.8078.108"
                adapter = page_adapter(page)
                ctx.close()
                shutil.rmtree(profile, ignore_errors=True)
                print(f"  run {run + 1}/{args.runs} done", file=sys.stderr)
    finally:
        server.stop()

    def med(load_rows, key):
        values = [r["timings"].get(key) for r in load_rows]
        return statistics.median(values) if all(v is not None for v in values) else None

    summary = {}
    for name, load_rows in rows.items():
        summary[name] = {key: med(load_rows, key) for key in MILESTONES.values()}
        summary[name].update({k: statistics.median(r[k] for r in load_rows)
                              for k in ("transferBytes", "decodedBytes", "requests")})
        summary[name]["python"] = sorted({r["boot"]["how"] + ("+packages" if r["boot"].get(
            "packages", {}).get("how") == "installed" else "") for r in load_rows})
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "browser": f"Chromium {version} headless",  # the adapter says which WebGPU
        "adapter": adapter,
        "runs": args.runs,
        "model": args.model,
        "loads": summary,
        "raw": rows,
    }
    print(f"boot: navigation -> first answer ({result['browser']}, model {args.model}, "
          f"median of {args.runs}, {result['date']})")
    print(f"  {'':<20}" + "".join(f"{name:>22}" for name in LOADS))
    for label, key in MILESTONES.items():
        cells = [summary[n][key] for n in LOADS]
        if any(c is not None for c in cells):
            print(f"  {label:<20}" + "".join(f"{c / 1e3:>21.2f}s" if c is not None else f"{'-':>22}"
                                             for c in cells))
    print(f"  {'transferred':<20}" + "".join(f"{summary[n]['transferBytes'] / 1e6:>20.2f}MB"
                                             for n in LOADS))
    print(f"  {'Python started':<20}" + "".join(f"{'/'.join(summary[n]['python']):>22}"
                                                for n in LOADS))
    c, off = summary["cached"], summary["cached, no snapshot"]
    result["snapshotSpeedup"] = off["pythonReady"] / c["pythonReady"]
    print(f"  cached: Python ready {result['snapshotSpeedup']:.2f}x sooner with the snapshot "
          "than without (same run)")
    for name in ("first", "cached"):
        print(f"waterfall, {name} load (median start and end, s since navigation):")
        print("\n".join(waterfall(rows[name])))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
